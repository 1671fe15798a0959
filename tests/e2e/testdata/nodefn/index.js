// A v1 local function written against the unmodified npm
// aws-greengrass-core-sdk, as v1 fleets have them. ROLE selects what it
// does in the ggcore end-to-end test.
const crypto = require('crypto');
const ggSdk = require('aws-greengrass-core-sdk');

const iotClient = new ggSdk.IotData();
const role = process.env.ROLE;

if (role === 'pinned') {
    // Long-lived: publishes from outside its handler, as v1's HelloWorld.
    let n = 0;
    const tick = () => {
        n += 1;
        iotClient.publish({ topic: 'fn/pinned/hello', payload: JSON.stringify({ hello: 'from pinned', n }) }, () => {});
        setTimeout(tick, 300);
    };
    tick();
}

if (role === 'crasher') {
    setTimeout(() => process.exit(2), 50);
}

exports.handler = function handler(event, context, callback) {
    if (role === 'secret') {
        // Reads the group's secret SECRET_ID through the SDK's
        // SecretsManager and publishes it (or its refusal) on REPLY_TOPIC.
        const secrets = new ggSdk.SecretsManager();
        let answered = false;
        secrets.getSecretValue({ SecretId: process.env.SECRET_ID }, (err, data) => {
            if (answered) {
                return;
            }
            answered = true;
            // Without DeStringifyResultFlag the SDK passes GetSecretValue's
            // answer as the JSON text it received.
            const secret = (typeof data === 'string' || Buffer.isBuffer(data)) ? JSON.parse(data.toString()) : data;
            // The SDK logs every payload it publishes (to the core's log):
            // publish the value's SHA-256, not the value.
            const out = err ? { function: 'node', error: String(err.message || err) }
                : { function: 'node', sha256: crypto.createHash('sha256').update(secret.SecretString).digest('hex') };
            iotClient.publish({ topic: process.env.REPLY_TOPIC, payload: JSON.stringify(out) }, (perr) => {
                callback(perr, 'done');
            });
        });
        return;
    }
    const reply = { got: event, subject: context.clientContext.Custom.subject };
    iotClient.publish({ topic: 'fn/reply/dev2', payload: JSON.stringify(reply) }, (err) => {
        callback(err, 'done');
    });
};
