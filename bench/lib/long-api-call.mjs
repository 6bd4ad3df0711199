// POST to the local stayupd's API as root (its local token) and print the JSON answer, with no time limit:
// the CLI's fetch gives up when the answer's headers take more than 300 s (undici's headersTimeout), and an
// rfsverify over a million files takes longer. Run inside a lab server: node long-api-call.mjs URL_PATH
import { readFileSync } from 'node:fs';
import http from 'node:http';

const path = process.argv[2];
const token = readFileSync('/var/lib/stayup/private/local.token', 'utf8').trim();
const req = http.request({ host: '127.0.0.1', port: Number(process.env.STAYUP_PORT ?? 9010), method: 'POST', path, headers: { authorization: `Bearer ${token}` } }, (res) => {
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (c) => (text += c));
  res.on('end', () => {
    process.stdout.write(`${JSON.stringify({ status: res.statusCode, body: JSON.parse(text || 'null') })}\n`);
  });
});
req.on('error', (e) => {
  process.stderr.write(`long-api-call: ${e.message}\n`);
  process.exit(1);
});
req.end();
