// Mirror heartbeats: frames, module key, transports (UDP and in-memory) and the loss detector.
export * from './frame.ts';
export * from './replay.ts';
export * from './module-key.ts';
export * from './channel.ts';
export * from './transport.ts';
export * from './memory.ts';
export * from './loss-detector.ts';
export * from './config.ts';
