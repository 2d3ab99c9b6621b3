# Ruby pg (libpq): PG.connect('') takes PGSERVICE/PGSERVICEFILE/PGPASSFILE from the
# environment; libpq reads pgpass at every connect.
require 'pg'

seconds, interval = ARGV.map(&:to_f)
finish = Time.now.to_f + seconds
while Time.now.to_f < finish
  begin
    conn = PG.connect('connect_timeout=5')
    conn.exec('select current_user')
    conn.close
    puts "ok #{Time.now.to_f}"
  rescue StandardError => e
    puts "fail #{Time.now.to_f} #{e.message.tr("\n", ' ')}"
  end
  $stdout.flush
  sleep interval
end
