// ggcore's clean-room Node.js runtime for v1 local functions: loads the
// handler named by --handler=module.export, then fetches work from the
// core, calls handler(event, context, callback) one invocation at a time,
// and posts each result or error. Written for ggcore from the protocol.
'use strict';

const path = require('path');
const IPCClient = require('aws-greengrass-ipc-sdk-js');

function fatal(msg) {
    process.stderr.write(`[FATAL] ggcore node runtime: ${msg}\n`);
    process.exit(1);
}

for (const name of ['MY_FUNCTION_ARN', 'AWS_CONTAINER_AUTHORIZATION_TOKEN', 'ENCODING_TYPE', 'GGC_MAX_INTERFACE_VERSION']) {
    if (!process.env[name]) {
        fatal(`environment variable ${name} is not set`);
    }
}
const functionArn = process.env.MY_FUNCTION_ARN;
const binary = process.env.ENCODING_TYPE === 'binary';
if (!binary && process.env.ENCODING_TYPE !== 'json') {
    fatal(`ENCODING_TYPE ${process.env.ENCODING_TYPE}: want json or binary`);
}

const handlerArg = process.argv.slice(2).find((a) => a.startsWith('--handler='));
if (!handlerArg) {
    fatal('missing --handler=module.export');
}
const spec = handlerArg.slice('--handler='.length);
const dot = spec.lastIndexOf('.');
if (dot <= 0) {
    fatal(`handler ${spec}: want module.export`);
}
const moduleName = spec.slice(0, dot);
const exportName = spec.slice(dot + 1);

process.on('SIGTERM', () => process.exit(0));

const ipc = new IPCClient(process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN);
const qualifier = functionArn.split(':')[7];
const functionName = functionArn.split(':')[6];

let mod;
try {
    mod = require(path.resolve(process.cwd(), moduleName));
} catch (e) {
    fatal(`cannot load handler module ${moduleName}: ${e && e.stack ? e.stack : e}`);
}
const handler = mod[exportName];
if (typeof handler !== 'function') {
    fatal(`handler ${spec}: ${exportName} is not a function exported by ${moduleName}`);
}

function errorObject(err) {
    if (err instanceof Error) {
        return {
            errorMessage: err.message,
            errorType: err.name,
            stackTrace: String(err.stack || '').split('\n').slice(1).map((l) => l.trim()),
        };
    }
    return { errorMessage: typeof err === 'string' ? err : JSON.stringify(err) };
}

function decodeContext(b64) {
    if (!b64) {
        return {};
    }
    try {
        return JSON.parse(Buffer.from(b64, 'base64').toString()) || {};
    } catch (e) {
        return {};
    }
}

// retry calls fn(cb) until it succeeds, with capped exponential backoff;
// the core answers get-work only with work, so errors mean it is away.
function retry(fn, done) {
    let delay = 50;
    const attempt = () => fn((err, ...rest) => {
        if (!err) {
            done(...rest);
            return;
        }
        if (err.statusCode === 401 || err.statusCode === 403) {
            fatal(`the core refused this function's token: ${err.message}`);
        }
        process.stderr.write(`[WARN] ggcore node runtime: ${err.message}; retrying in ${delay} ms\n`);
        setTimeout(attempt, delay);
        delay = Math.min(delay * 2, 5000);
    });
    attempt();
}

let pending = null; // finish of the invocation in progress

process.on('beforeExit', () => {
    if (pending) {
        pending(null, undefined);
    }
});

function invoke(payload, invocationId, clientContextB64) {
    const cc = decodeContext(clientContextB64);
    let event = payload;
    if (!binary) {
        const text = payload.toString();
        try {
            event = text.length === 0 ? {} : JSON.parse(text);
        } catch (e) {
            process.stderr.write('[ERROR] Cannot parse given invoke payload as JSON\n');
            ipc.postHandlerErr(functionArn, JSON.stringify(errorObject(new Error('payload is not JSON'))), invocationId, next);
            return;
        }
    }
    let finished = false;
    const finish = (err, result) => {
        if (finished) {
            return;
        }
        finished = true;
        pending = null;
        if (err !== null && err !== undefined) {
            retry((cb) => ipc.postHandlerErr(functionArn, JSON.stringify(errorObject(err)), invocationId, cb), next);
            return;
        }
        let body;
        if (binary && (Buffer.isBuffer(result) || typeof result === 'string')) {
            body = result;
        } else {
            body = JSON.stringify(result === undefined ? null : result);
        }
        retry((cb) => ipc.postWorkResult(functionArn, body, invocationId, cb), next);
    };
    pending = finish;
    const custom = cc.custom || {};
    const context = {
        invokedFunctionArn: functionArn,
        awsRequestId: invocationId,
        functionName,
        functionVersion: qualifier,
        clientContext: { client: cc.client || {}, Custom: custom, custom, env: cc.env || {} },
        succeed: (r) => finish(null, r),
        fail: (e) => finish(e || new Error('failed')),
        done: (e, r) => finish(e, r),
    };
    try {
        const ret = handler.call(mod, event, context, finish);
        if (ret && typeof ret.then === 'function') {
            ret.then((r) => finish(null, r), (e) => finish(e || new Error('rejected')));
        }
    } catch (e) {
        finish(e);
    }
}

function next() {
    retry((cb) => ipc.getWork(functionArn, cb), invoke);
}

next();
