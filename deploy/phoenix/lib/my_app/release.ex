defmodule MyApp.Release do
  @moduledoc """
  Release tasks. Creating the database is aurora-sidecar's job (it waits for Aurora,
  creates the database when missing and hands over DATABASE_URL), so this only migrates:
  the seed setup's `create_and_migrate` is gone.

      bin/my_app eval "MyApp.Release.migrate()"
  """
  @app :my_app

  def migrate do
    load_app()

    for repo <- repos() do
      {:ok, _, _} = Ecto.Migrator.with_repo(repo, &Ecto.Migrator.run(&1, :up, all: true))
    end
  end

  def rollback(repo, version) do
    load_app()
    {:ok, _, _} = Ecto.Migrator.with_repo(repo, &Ecto.Migrator.run(&1, :down, to: version))
  end

  defp repos, do: Application.fetch_env!(@app, :ecto_repos)

  defp load_app do
    # SSL must be up before the Repo connects with ssl: true.
    Application.ensure_all_started(:ssl)
    Application.load(@app)
  end
end
