# The Phoenix files (deploy/phoenix) as a release would run them, without Ecto, Postgrex
# and DBConnection (hex.pm is out of reach): config/runtime.exs evaluated by Config.Reader
# with the profile's variables (as at release boot), then for every new connection what
# DBConnection and Postgrex do with the Repo's options: call the `configure:` callback,
# take the URL apart as Ecto does, send the SSLRequest and run the OTP :ssl handshake with
# the `ssl:` options, then log in (SCRAM-SHA-256 or, for the IAM rig's PAM, a password
# message) and wait for ReadyForQuery.
#
#   elixir ecto_probe.exs PHOENIX_DIR SECONDS INTERVAL     the loop, lines as the others
#   elixir ecto_probe.exs PHOENIX_DIR --config             print the TLS decision and exit
#   elixir ecto_probe.exs PHOENIX_DIR --missing-password   the callback on a bad file
[phoenix | rest] = System.argv()
Code.require_file(Path.join(phoenix, "lib/my_app/db_password.ex"))
System.put_env("SECRET_KEY_BASE", String.duplicate("k", 64))
# Postgrex depends on :ssl, so a release has it started before the Repo connects.
{:ok, _} = Application.ensure_all_started(:ssl)

defmodule Wire do
  def connect(opts) do
    uri = URI.parse(opts[:url])
    [user, _url_password] = String.split(uri.userinfo, ":") |> Enum.map(&URI.decode/1)
    "/" <> db = uri.path
    {:ok, tcp} = :gen_tcp.connect(String.to_charlist(uri.host), uri.port, [:binary, active: false], 5000)
    sock = upgrade(tcp, opts[:ssl])
    send_msg(sock, nil, <<196_608::32, "user", 0, user::binary, 0, "database", 0, URI.decode(db)::binary, 0, 0>>)
    auth(sock, opts[:password])
    wait_ready(sock)
    send_msg(sock, ?X, "")
    close(sock)
  end

  defp upgrade(tcp, false), do: {:gen_tcp, tcp}

  defp upgrade(tcp, ssl_opts) do
    :ok = :gen_tcp.send(tcp, <<8::32, 80_877_103::32>>)

    case :gen_tcp.recv(tcp, 1, 5000) do
      {:ok, "S"} ->
        case :ssl.connect(tcp, [active: false] ++ ssl_opts, 5000) do
          {:ok, tls} -> {:ssl, tls}
          {:error, reason} -> raise "TLS handshake: #{inspect(reason)}"
        end

      other ->
        raise "server declined TLS: #{inspect(other)}"
    end
  end

  defp auth(sock, password) do
    case recv_msg(sock) do
      {?R, <<0::32>>} -> :ok
      {?R, <<3::32>>} -> send_msg(sock, ?p, password <> <<0>>) && auth(sock, password)
      {?R, <<10::32, _mechanisms::binary>>} -> scram(sock, password)
      {?E, fields} -> raise error_text(fields)
      {type, _} -> raise "unexpected message #{<<type>>} during authentication"
    end
  end

  defp scram(sock, password) do
    nonce = Base.encode64(:crypto.strong_rand_bytes(18))
    first_bare = "n=,r=" <> nonce
    first = "n,," <> first_bare
    send_msg(sock, ?p, "SCRAM-SHA-256" <> <<0, byte_size(first)::32>> <> first)
    {?R, <<11::32, server_first::binary>>} = expect_auth(sock)
    %{"r" => server_nonce, "s" => salt, "i" => iterations} = scram_fields(server_first)
    salted = :crypto.pbkdf2_hmac(:sha256, password, Base.decode64!(salt), String.to_integer(iterations), 32)
    client_key = :crypto.mac(:hmac, :sha256, salted, "Client Key")
    without_proof = "c=biws,r=" <> server_nonce
    message = Enum.join([first_bare, server_first, without_proof], ",")
    signature = :crypto.mac(:hmac, :sha256, :crypto.hash(:sha256, client_key), message)
    proof = :crypto.exor(client_key, signature)
    send_msg(sock, ?p, without_proof <> ",p=" <> Base.encode64(proof))
    {?R, <<12::32, _server_final::binary>>} = expect_auth(sock)
    {?R, <<0::32>>} = expect_auth(sock)
    :ok
  end

  defp expect_auth(sock) do
    case recv_msg(sock) do
      {?E, fields} -> raise error_text(fields)
      msg -> msg
    end
  end

  defp scram_fields(text) do
    for kv <- String.split(text, ","), into: %{} do
      [k, v] = String.split(kv, "=", parts: 2)
      {k, v}
    end
  end

  defp wait_ready(sock) do
    case recv_msg(sock) do
      {?Z, _} -> :ok
      {?E, fields} -> raise error_text(fields)
      _ -> wait_ready(sock)
    end
  end

  defp error_text(fields) do
    parts = for f <- :binary.split(fields, <<0>>, [:global]), f != "", into: %{}, do: {:binary.first(f), binary_part(f, 1, byte_size(f) - 1)}
    "#{parts[?S]} #{parts[?C]} #{parts[?M]}"
  end

  defp send_msg(sock, nil, body), do: put(sock, <<byte_size(body) + 4::32>> <> body)
  defp send_msg(sock, type, body), do: put(sock, <<type, byte_size(body) + 4::32>> <> body)

  defp put({mod, s}, data), do: :ok = mod.send(s, data)

  defp recv_msg({mod, s}) do
    {:ok, <<type, len::32>>} = mod.recv(s, 5, 5000)
    body = if len > 4, do: elem(mod.recv(s, len - 4, 5000), 1), else: ""
    {type, body}
  end

  defp close({mod, s}), do: mod.close(s)
end

repo_opts = fn ->
  config = Config.Reader.read!(Path.join(phoenix, "config/runtime.exs"), env: :prod, target: :host)
  config[:my_app][MyApp.Repo]
end

now = fn -> System.os_time(:millisecond) / 1000 end

case rest do
  ["--config"] ->
    opts = repo_opts.()
    IO.puts(inspect(%{ssl: opts[:ssl] != false, verify: is_list(opts[:ssl]) && opts[:ssl][:verify], configure: opts[:configure] != nil}))

  ["--missing-password"] ->
    {m, f, _} = repo_opts.()[:configure]

    for bad <- ["/nonexistent/password", "/dev/null"] do
      try do
        apply(m, f, [[password: "stale"], bad])
        IO.puts("no error for #{bad}")
        System.halt(1)
      rescue
        e -> IO.puts("raised for #{bad}: #{Exception.message(e)}")
      end
    end

  [seconds, interval] ->
    opts = repo_opts.()
    {m, f, a} = opts[:configure]
    finish = now.() + elem(Float.parse(seconds), 0)

    Stream.repeatedly(fn ->
      try do
        # What DBConnection does before each connect: the callback's options win.
        Wire.connect(apply(m, f, [opts | a]))
        IO.puts("ok #{now.()}")
      rescue
        e -> IO.puts("fail #{now.()} #{String.replace(Exception.message(e), "\n", " ")}")
      end

      Process.sleep(round(elem(Float.parse(interval), 0) * 1000))
    end)
    |> Stream.take_while(fn _ -> now.() < finish end)
    |> Stream.run()
end
