import Config

# aurora-sidecar renders /run/aurora-sidecar/application.profile; the release's entry
# script sources it, so DATABASE_URL is set by the time this runs. The password in it is
# percent-encoded; Ecto decodes it back to the exact bytes.
if config_env() == :prod do
  dir = System.get_env("AURORA_SIDECAR_DIR", "/run/aurora-sidecar")

  database_url =
    System.get_env("DATABASE_URL") ||
      raise "DATABASE_URL is missing: source #{dir}/application.profile first"

  %URI{host: host} = URI.parse(database_url)
  ca = Path.join(dir, "rds-ca.pem")

  # With --sslmode verify-full the sidecar copies the RDS CA bundle next to the profile.
  # An Ecto URL cannot carry verification options, so they are set here, and the URL's
  # "?ssl=true" is dropped so these win.
  ssl =
    if File.exists?(ca) do
      [
        cacertfile: ca,
        verify: :verify_peer,
        server_name_indication: String.to_charlist(host),
        customize_hostname_check: [
          match_fun: :public_key.pkix_verify_hostname_match_fun(:https)
        ]
      ]
    else
      false
    end

  # With --iam-auth the sidecar also writes the token alone to `password` and renews it;
  # the token in DATABASE_URL expires 15 minutes after it was signed, so every new pooled
  # connection reads the current one (see MyApp.DBToken).
  password_file = Path.join(dir, "password")

  iam =
    if File.exists?(password_file),
      do: [configure: {MyApp.DBToken, :configure, [password_file]}],
      else: []

  config :my_app,
         MyApp.Repo,
         [
           url: String.replace(database_url, ~r/\?.*$/, ""),
           ssl: ssl,
           pool_size: String.to_integer(System.get_env("POOL_SIZE") || "10"),
           # Aurora Serverless v2 resuming from 0 ACU holds new connections for ~15-30 s.
           connect_timeout: 40_000,
           queue_target: 5_000
         ] ++ iam

  config :my_app, MyAppWeb.Endpoint,
    server: true,
    http: [ip: {0, 0, 0, 0}, port: String.to_integer(System.get_env("PORT") || "4000")],
    secret_key_base: System.fetch_env!("SECRET_KEY_BASE")
end
