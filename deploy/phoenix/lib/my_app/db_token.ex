defmodule MyApp.DBToken do
  @moduledoc """
  IAM database authentication with aurora-sidecar (`--iam-auth`): the password is a token
  that lives 15 minutes, which the sidecar renews in `/run/aurora-sidecar/password`.
  DBConnection calls the Repo's `configure:` callback before every new connection, so each
  connection logs in with the token current at that moment; open connections are not
  affected when a token expires (RDS checks it only at login).
  """

  @doc "The `configure:` callback: the options with the current token as the password."
  def configure(opts, password_file) do
    Keyword.put(opts, :password, File.read!(password_file))
  end
end
