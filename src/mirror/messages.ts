// The texts the mirror machine puts in state reasons and module log lines. Where the reference quotes a
// line (§3.3, §3.4, §5, §2.5) it is copied, so operators and their log scrapers see familiar phrases.

export const MSG = {
  dataNotUptodate: 'Data may be not uptodate for replicated directories (wait for the start of the remote server)',
  waitRule: 'Action wait from failover rule notuptodate_server',
  primHint: 'If you are sure that this server has valid data, run safekit prim',
  dataInconsistent:
    'Data may be inconsistent on this server: it was stopped during reintegration; run safekit primforce if you are sure that its data is valid',
  failoverOff: 'Failover-off configured',
  noHeartbeat: 'Action alone called by heart: no heartbeat',
  peerStopped: 'Action alone called by heart: the remote server left the primary role',
  splitBrainExit: 'Split brain recovery: exiting alone',
  splitBrainStay: 'Split brain recovery: staying alone',
  failback: 'Transition SWAP from defaultprim',
  maxloop: 'Action stop called by maxloop',
  starting: 'starting',
  stopping: 'stopping',
  stopped: 'stopped',
  listening: 'waiting for the heartbeats of the remote server',
  waitPeerPrim: 'waiting for the remote server to start as primary',
  waitPeerTakeover: 'waiting for the remote server (it is secondary and its primary left)',
  waitSecondMode: 'started as secondary: waiting for the remote server to be primary',
  reintegration: 'reintegration in progress',
  uptodate: 'uptodate',
  alone: 'primary without secondary',
  mirroring: 'primary with secondary',
  swapWait: 'swap: waiting for the remote server to take the primary role',
  swapFailed: 'swap: the remote server did not take the primary role',
  primaryWentAlone: 'the primary ran alone before it stopped: this secondary is not up to date',
  secondNotReady: 'the primary left while this secondary was not up to date',
  holdPeerPrimary: 'waiting for the remote server to leave the primary role',
  restart: 'restart',
} as const;
