// ggcore's clean-room implementation of the module that
// aws-greengrass-core-sdk requires as 'aws-greengrass-common-js': the
// environment a local function runs in, function ARN parsing, and a
// logger. Written for ggcore from the SDK's observable use of it.
'use strict';

const envVars = Object.freeze({
    AUTH_TOKEN: process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN,
    MY_FUNCTION_ARN: process.env.MY_FUNCTION_ARN,
    ROUTER_FUNCTION_ARN: process.env.ROUTER_FUNCTION_ARN || 'arn:aws:lambda:::function:GGRouter',
    SHADOW_FUNCTION_ARN: process.env.SHADOW_FUNCTION_ARN || 'arn:aws:lambda:::function:GGShadowService',
    SECRETS_MANAGER_FUNCTION_ARN: process.env.SECRETS_MANAGER_FUNCTION_ARN || 'arn:aws:lambda:::function:GGSecretManager:1',
    ENCODING_TYPE: process.env.ENCODING_TYPE,
    GG_DAEMON_PORT: process.env.GG_DAEMON_PORT || '8000',
    GGC_MAX_INTERFACE_VERSION: process.env.GGC_MAX_INTERFACE_VERSION,
});

// arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]; region
// and account are empty for the core's system functions.
const arnPattern = /^(arn:aws(?:-[a-z]+)*:lambda:(?:[a-z]{2}(?:-[a-z]+)+-\d)?:(?:\d{12})?:function:([a-zA-Z0-9_-]{1,64}))(?::(\$LATEST|[a-zA-Z0-9_-]{1,128}))?$/;

class FunctionArnFields {
    constructor(arn) {
        const m = arnPattern.exec(String(arn));
        if (!m) {
            throw new Error(`Cannot parse given string as a function ARN: ${arn}`);
        }
        const parts = m[1].split(':');
        this.arn = String(arn);
        this.unqualifiedArn = m[1];
        this.region = parts[3];
        this.accountId = parts[4];
        this.name = m[2];
        this.qualifier = m[3];
    }
}

function buildFunctionArn(unqualifiedArn, qualifier) {
    return qualifier ? `${unqualifiedArn}:${qualifier}` : unqualifiedArn;
}

class LocalWatchLogger {
    constructor() {
        this.debugOn = /^(debug|trace)$/i.test(process.env.LOG_LEVEL || '');
    }

    debug(msg) {
        if (this.debugOn) {
            process.stdout.write(`[DEBUG] ${msg}\n`);
        }
    }

    info(msg) { process.stdout.write(`[INFO] ${msg}\n`); }

    warn(msg) { process.stderr.write(`[WARN] ${msg}\n`); }

    error(msg) { process.stderr.write(`[ERROR] ${msg}\n`); }
}

module.exports = {
    envVars,
    FunctionArnFields,
    buildFunctionArn,
    logging: { LocalWatchLogger },
};
