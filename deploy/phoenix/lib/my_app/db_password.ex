defmodule MyApp.DBPassword do
  @moduledoc """
  The Repo's `configure:` callback: every new database connection logs in with the
  password aurora-sidecar holds now, not the one the release booted with.

  DBConnection calls `configure:` in the connection process before every connect attempt
  (the pool's first connections and every reconnect) and uses the options it returns. The
  sidecar rewrites its `password` file (`AURORA_SIDECAR_PASSWORD_FILE` in
  application.profile) atomically when the secret is rotated, and every few minutes with
  `--iam-auth`, where the password is a token that lives 15 minutes. Open connections are
  not affected: the server checks a password only at login.

  A missing, unreadable or empty file raises: the connection attempt fails loudly (and
  DBConnection retries with backoff) instead of logging in with a stale password.
  """

  @doc "The `configure:` callback: `opts` with the current password from `password_file`."
  def configure(opts, password_file) do
    Keyword.put(opts, :password, read!(password_file))
  end

  @doc "The password in `password_file`, byte for byte; raises when there is none."
  def read!(password_file) do
    case File.read(password_file) do
      {:ok, ""} ->
        raise "aurora-sidecar's password file #{password_file} is empty"

      {:ok, password} ->
        password

      {:error, reason} ->
        raise "cannot read aurora-sidecar's password file #{password_file}: " <>
                "#{:file.format_error(reason)} (is the sidecar's volume mounted, and the " <>
                "file owned by the app's user? see --owner)"
    end
  end
end
