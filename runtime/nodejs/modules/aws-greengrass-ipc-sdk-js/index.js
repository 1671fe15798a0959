// ggcore's clean-room implementation of the module that
// aws-greengrass-core-sdk requires as 'aws-greengrass-ipc-sdk-js': an HTTP
// client of the core's local IPC (127.0.0.1:GG_DAEMON_PORT,
// /2016-11-01/functions/{arn}). Written for ggcore from the protocol.
'use strict';

const http = require('http');

const API = '/2016-11-01/functions/';

function toBuffer(payload) {
    if (payload === undefined || payload === null) {
        return Buffer.alloc(0);
    }
    if (Buffer.isBuffer(payload)) {
        return payload;
    }
    if (payload instanceof Uint8Array) {
        return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    }
    if (typeof payload === 'string') {
        return Buffer.from(payload);
    }
    return Buffer.from(JSON.stringify(payload));
}

class IPCClient {
    constructor(authToken, host, port) {
        this.authToken = authToken || process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN || '';
        this.host = host || '127.0.0.1';
        this.port = Number(port || process.env.GG_DAEMON_PORT || 8000);
        this.agent = new http.Agent({ keepAlive: true });
    }

    // request sends one call; cb(err, res, body). No timeout: get-work
    // and get-result block until there is something to answer.
    request(method, path, headers, body, cb) {
        const h = Object.assign({ Authorization: this.authToken }, headers);
        if (body) {
            h['Content-Length'] = body.length;
        }
        const req = http.request({
            host: this.host, port: this.port, method, path, headers: h, agent: this.agent,
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                const data = Buffer.concat(chunks);
                if (res.statusCode < 200 || res.statusCode > 299) {
                    const err = new Error(`HTTP Error ${res.statusCode}: ${res.statusMessage}: ${data.toString()}`);
                    err.statusCode = res.statusCode;
                    cb(err);
                    return;
                }
                cb(null, res, data);
            });
            res.on('error', (e) => cb(e));
        });
        req.on('error', (e) => cb(e));
        if (body) {
            req.write(body);
        }
        req.end();
    }

    postWork(functionArn, payload, clientContext, invocationType, callback) {
        const headers = {
            'X-Amz-Client-Context': clientContext || '',
            'X-Amz-Invocation-Type': invocationType || 'RequestResponse',
        };
        this.request('POST', API + functionArn, headers, toBuffer(payload), (err, res) => {
            if (err) {
                callback(err);
                return;
            }
            callback(null, res.headers['x-amz-invocationid']);
        });
    }

    getWorkResult(functionArn, invocationId, callback) {
        this.request('GET', API + functionArn, { 'X-Amz-InvocationId': invocationId }, null, (err, res, body) => {
            if (err) {
                callback(err);
                return;
            }
            callback(null, body.toString(), res.headers['x-amz-function-error'] || '', res.statusCode);
        });
    }

    getWork(functionArn, callback) {
        this.request('GET', `${API}${functionArn}/work`, {}, null, (err, res, body) => {
            if (err) {
                callback(err);
                return;
            }
            callback(null, body, res.headers['x-amz-invocationid'], res.headers['x-amz-client-context'] || '');
        });
    }

    postWorkResult(functionArn, result, invocationId, callback) {
        this.request('POST', `${API}${functionArn}/work`, { 'X-Amz-InvocationId': invocationId },
            toBuffer(result), (err) => callback(err || null));
    }

    postHandlerErr(functionArn, errorJSON, invocationId, callback) {
        this.request('POST', `${API}${functionArn}/work`, {
            'X-Amz-InvocationId': invocationId, 'X-Amz-Function-Error': 'Handled',
        }, toBuffer(errorJSON), (err) => callback(err || null));
    }

    putInitializationResult(functionArn, success, message, callback) {
        const body = toBuffer(JSON.stringify({ Success: !!success, Response: message || '' }));
        this.request('PUT', `${API}${functionArn}/initialized`, {}, body, (err) => callback && callback(err || null));
    }
}

module.exports = IPCClient;
