import Config

# aurora-sidecar renders application.profile into its out-dir; the release's entry script
# (rel/overlays/bin/start-with-sidecar or start-exec) sources it or runs under it, so every
# setting below comes from the variables it exports: DATABASE_URL, PGSSLMODE,
# PGSSLROOTCERT and AURORA_SIDECAR_PASSWORD_FILE. No path is guessed here.
if config_env() == :prod do
  from_sidecar = fn name ->
    System.get_env(name) ||
      raise "#{name} is not set: start the release through bin/start-with-sidecar " <>
              "(it sources aurora-sidecar's application.profile) or bin/start-exec"
  end

  database_url = from_sidecar.("DATABASE_URL")
  password_file = from_sidecar.("AURORA_SIDECAR_PASSWORD_FILE")
  sslmode = from_sidecar.("PGSSLMODE")
  %URI{host: host} = URI.parse(database_url)

  # TLS as the sidecar used it (its --sslmode, libpq's meaning). An Ecto URL cannot carry
  # verification options, so they are set here and the URL's "?ssl=true" is dropped.
  verify_host =
    case :inet.parse_address(String.to_charlist(host)) do
      # An IP address is checked against the certificate's IP SANs (OTP's default check
      # compares it with DNS names only and fails).
      {:ok, ip} ->
        want =
          case ip do
            {_, _, _, _} -> Tuple.to_list(ip)
            _ -> for word <- Tuple.to_list(ip), into: [], do: [div(word, 256), rem(word, 256)]
          end
          |> List.flatten()

        [
          server_name_indication: String.to_charlist(host),
          customize_hostname_check: [
            match_fun: fn
              {:dns_id, _}, {:iPAddress, presented} -> presented == want
              _, _ -> false
            end
          ]
        ]

      {:error, _} ->
        [
          server_name_indication: String.to_charlist(host),
          customize_hostname_check: [
            match_fun: :public_key.pkix_verify_hostname_match_fun(:https)
          ]
        ]
    end

  verified = fn ->
    ca = System.get_env("PGSSLROOTCERT")

    unless ca && File.regular?(ca) do
      raise "aurora-sidecar verified the server (sslmode #{sslmode}) but no CA bundle is " <>
              "published (PGSSLROOTCERT=#{inspect(ca)}): give the sidecar --sslrootcert " <>
              "(the image's RDS bundle is its default for RDS hosts)"
    end

    [verify: :verify_peer, cacertfile: ca]
  end

  ssl =
    case sslmode do
      "disable" ->
        false

      # libpq's require: encrypted, the server not verified (use verify-full for that).
      "require" ->
        [verify: :verify_none]

      "verify-ca" ->
        verified.() ++ [server_name_indication: :disable]

      "verify-full" ->
        verified.() ++ verify_host

      # libpq's prefer falls back to plain text when the server has no TLS; Postgrex has
      # no fallback, so the choice is made here rather than guessed.
      other ->
        raise "aurora-sidecar used sslmode #{other}, which Ecto cannot follow: run the " <>
                "sidecar with --sslmode require or verify-full (disable on a trusted " <>
                "local network only)"
    end

  config :my_app, MyApp.Repo,
    url: String.replace(database_url, ~r/\?.*$/, ""),
    ssl: ssl,
    # Before every new connection, the password the sidecar holds now (rotation, IAM
    # tokens); the URL's password is only the fallback for anything that skips it.
    configure: {MyApp.DBPassword, :configure, [password_file]},
    pool_size: String.to_integer(System.get_env("POOL_SIZE") || "10"),
    # Aurora Serverless v2 resuming from 0 ACU holds new connections for ~15-30 s.
    connect_timeout: 40_000,
    queue_target: 5_000

  config :my_app, MyAppWeb.Endpoint,
    server: true,
    http: [ip: {0, 0, 0, 0}, port: String.to_integer(System.get_env("PORT") || "4000")],
    secret_key_base: System.fetch_env!("SECRET_KEY_BASE")
end
