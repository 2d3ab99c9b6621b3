// node-postgres: host, port, user, database and TLS parsed from DATABASE_URL
// (postgresql scheme; sslrootcert is read into ssl.ca), the password a function that reads
// AURORA_SIDECAR_PASSWORD_FILE: pg calls it for every new client (a Pool's too).
const fs = require('fs');
const { Client } = require('pg');
const { parse } = require('pg-connection-string');

const [seconds, interval] = process.argv.slice(2).map(Number);
const config = parse(process.env.DATABASE_URL);
config.password = () => fs.readFileSync(process.env.AURORA_SIDECAR_PASSWORD_FILE, 'utf8');
config.connectionTimeoutMillis = 5000;
// pg-connection-string reads sslmode=require as "verify against Node's own CA list";
// libpq's require (what the sidecar used) encrypts without verifying: say so here.
if (process.env.PGSSLMODE === 'require') config.ssl = { rejectUnauthorized: false };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const client = new Client(config);
    try {
      await client.connect();
      await client.query('select current_user');
      console.log(`ok ${Date.now() / 1000}`);
    } catch (e) {
      console.log(`fail ${Date.now() / 1000} ${String(e.message).replace(/\n/g, ' ')}`);
    } finally {
      await client.end().catch(() => {});
    }
    await sleep(interval * 1000);
  }
})();
