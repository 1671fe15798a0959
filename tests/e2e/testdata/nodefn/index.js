// A v1 local function written against the unmodified npm
// aws-greengrass-core-sdk, as v1 fleets have them. ROLE selects what it
// does in the ggcore end-to-end test.
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
    const reply = { got: event, subject: context.clientContext.Custom.subject };
    iotClient.publish({ topic: 'fn/reply/dev2', payload: JSON.stringify(reply) }, (err) => {
        callback(err, 'done');
    });
};
