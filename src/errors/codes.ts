// The one registry of error codes, shared by the daemon's API, the CLI and the tests.
// Each code says what HTTP status the API answers with and what exit code the CLI ends with.
// Add new codes to the section of their area; never reuse or rename a published code.

export interface ErrorSpec {
  /** HTTP status the API answers with. */
  readonly status: number;
  /** Exit code of the CLI. 2 = bad input (config, package, arguments); 1 = operation failed; 3 = auth. */
  readonly exit: number;
  /** One line for docs and the OpenAPI description. */
  readonly summary: string;
}

export const errorCodes = {
  // --- generic
  INTERNAL: { status: 500, exit: 1, summary: 'unexpected internal error (a bug: please send a snapshot)' },
  BAD_REQUEST: { status: 400, exit: 2, summary: 'the request is malformed' },
  BAD_ARGUMENT: { status: 400, exit: 2, summary: 'a command argument is invalid' },
  NOT_FOUND: { status: 404, exit: 1, summary: 'no such object' },
  CONFLICT: { status: 409, exit: 1, summary: 'the operation conflicts with the current state' },
  IO: { status: 500, exit: 1, summary: 'a file or system operation failed' },

  // --- configuration (cluster.xml, userconfig.xml)
  CONFIG_XML_MALFORMED: { status: 400, exit: 2, summary: 'the XML is not well-formed' },
  CONFIG_INVALID: { status: 400, exit: 2, summary: 'the configuration breaks the schema or a rule' },
  CONFIG_FILE_UNREADABLE: { status: 400, exit: 2, summary: 'the configuration file cannot be read' },
  CLUSTER_NOT_CONFIGURED: { status: 409, exit: 1, summary: 'this node has no cluster configuration' },
  CLUSTER_LOCKED: { status: 409, exit: 1, summary: 'the cluster configuration is locked' },

  // --- module packages and installed modules
  PACKAGE_INVALID: { status: 400, exit: 2, summary: 'the module package is not a valid zip' },
  PACKAGE_HOSTILE: { status: 400, exit: 2, summary: 'the module package holds a dangerous entry' },
  PACKAGE_TOO_LARGE: { status: 400, exit: 2, summary: 'the module package exceeds a size cap' },
  PACKAGE_MISSING_CONFIG: { status: 400, exit: 2, summary: 'the module package has no conf/userconfig.xml' },
  MODULE_NOT_FOUND: { status: 404, exit: 1, summary: 'no module of that name is installed' },
  MODULE_EXISTS: { status: 409, exit: 1, summary: 'a module of that name is already installed' },
  MODULE_ID_TAKEN: { status: 409, exit: 2, summary: 'the module id is already used by another module' },
  MODULE_ID_EXHAUSTED: { status: 409, exit: 1, summary: 'no free module id is left in the cluster' },
  MODULE_NAME_INVALID: { status: 400, exit: 2, summary: 'module names are 1-32 letters, digits, _ or -' },
  MODULE_RUNNING: { status: 409, exit: 1, summary: 'the module must be stopped for this operation' },

  // --- authentication and authorisation
  AUTH_REQUIRED: { status: 401, exit: 3, summary: 'login required' },
  AUTH_FAILED: { status: 401, exit: 3, summary: 'wrong user name or password' },
  AUTH_FORBIDDEN: { status: 403, exit: 3, summary: 'your role does not allow this operation' },
  AUTH_TOKEN_INVALID: { status: 401, exit: 3, summary: 'the API token or session is invalid or expired' },
  CLUSTER_AUTH_FAILED: { status: 401, exit: 3, summary: 'the request is not sealed with this cluster key' },
  CLUSTER_AUTH_REPLAY: { status: 401, exit: 3, summary: 'the sealed request is a replay or its clock is off' },

  // --- daemon and remote commands
  DAEMON_UNREACHABLE: { status: 503, exit: 1, summary: 'the stayup daemon cannot be reached' },
  REMOTE_FAILED: { status: 502, exit: 1, summary: 'a node answered a distributed command with an error' },

  // --- scripts
  SCRIPT_FAILED: { status: 500, exit: 1, summary: 'a module script exited with an error' },
  SCRIPT_TIMEOUT: { status: 500, exit: 1, summary: 'a module script ran past its timeout and was killed' },

  // --- heartbeats (mirror)
  MODULE_KEY_INVALID: { status: 400, exit: 2, summary: 'the module key file is malformed or readable by others' },
  HEARTBEAT_BIND_FAILED: { status: 500, exit: 1, summary: 'a heartbeat socket cannot be opened on its lan address' },

  // --- module engines (mirror)
  STATE_CORRUPT: { status: 500, exit: 1, summary: 'a persisted module state file is malformed' },
  MODULE_NOT_MIRROR: { status: 409, exit: 1, summary: 'this command applies to mirror modules only' },
  ENGINE_FAULTED: { status: 500, exit: 1, summary: 'the module engine stopped after a failure it cannot recover from' },
  WAIT_TIMEOUT: { status: 504, exit: 1, summary: 'the module did not reach the awaited state in time' },
  REPLICATION_UNAVAILABLE: { status: 409, exit: 1, summary: 'the module replicates directories (<rfs>) and the replication\'s native part (the FUSE addon) cannot be loaded: run npm run build:native' },

  // --- replication (rfs)
  RFS_TOCHECK_MISSING: { status: 409, exit: 1, summary: 'a <tocheck> path of a replicated directory does not exist (is its filesystem mounted?): nothing is mounted' },
  RFS_NOT_REPLICATED: { status: 409, exit: 1, summary: 'the module replicates no directory (no <rfs>)' },
  RFS_WRONG_ROLE: { status: 409, exit: 1, summary: 'rfsverify runs on the secondary, rfsdiff on the primary (ALONE or PRIM)' },
  RFS_BUSY: { status: 409, exit: 1, summary: 'a comparison of the replicas (rfsverify or rfsdiff) is already running for this module' },
  REPLICATION_PEER_UNREACHABLE: { status: 503, exit: 1, summary: 'the peer\'s replication service cannot be reached or stopped answering' },
  REPLICATION_PROTOCOL: { status: 502, exit: 1, summary: 'the peer sent a malformed or unexpected replication frame' },
  REPLICATION_SYNC_DATES: { status: 409, exit: 1, summary: 'the two nodes\' last-sync dates are too far apart for an automatic reintegration: second fullsync on the secondary' },
  REPLICATION_JOIN_REFUSED: { status: 502, exit: 1, summary: 'an extra connection of the replication stream (nbremconn) names no current stream session, or a place in it that is taken or out of range' },
  REPLICATION_VERSION: { status: 502, exit: 1, summary: 'the two nodes speak no common replication protocol version: upgrade the node named in the message' },

  // --- lab
  LAB_NEEDS_ROOT: { status: 400, exit: 2, summary: 'the lab needs root and network namespaces' },
  LAB_EXISTS: { status: 409, exit: 1, summary: 'a lab of that name already exists' },
  LAB_NOT_FOUND: { status: 404, exit: 1, summary: 'no lab of that name' },
  LAB_NODE_UNKNOWN: { status: 404, exit: 2, summary: 'the lab has no server or client of that name' },
  LAB_COMMAND_FAILED: { status: 500, exit: 1, summary: 'a command that builds or changes the lab failed' },

  // --- virtual IP
  VIP_FAILED: { status: 500, exit: 1, summary: 'a virtual IP could not be added, announced or removed' },
  VIP_NO_INTERFACE: { status: 409, exit: 1, summary: 'no network interface of this node can carry the virtual IP' },
  VIP_UNSUPPORTED: { status: 400, exit: 2, summary: 'this form of <vip> is not supported by the virtual IP manager' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorCodes;
