// One call through @alicloud/pop-core, configured exactly as its README shows.
// Input (argv[2], JSON): {client: {accessKeyId, accessKeySecret, securityToken?, endpoint, apiVersion, opts?},
//                         action, params, options?}. Output (stdout, JSON): {ok, result} or {ok: false, code, message}.
'use strict';
const RPCClient = require('@alicloud/pop-core').RPCClient;

const call = JSON.parse(process.argv[2]);
const client = new RPCClient(call.client);
client.request(call.action, call.params, call.options || {}).then(
  (result) => process.stdout.write(JSON.stringify({ ok: true, result })),
  (error) => process.stdout.write(JSON.stringify({ ok: false, code: error.code || null, message: String(error.message) })),
);
