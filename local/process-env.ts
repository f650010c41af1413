/**
 * Imported first by the local cloud's entry point: the AWS SDK warns on every start that its releases from 2027 need
 * Node 22 (Lambda runs 24; this machine has 20). The README says so once; the terminal need not.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
