/**
 * V8 settings for a small, latency-bound sidecar process (issue 15; measured in
 * test/bench/memory-phases.ts, reasons in docs/design.md "Footprint").
 *
 * - `--liftoff-only`: undici parses HTTP/1.1 with llhttp compiled to WebAssembly. By default V8
 *   compiles it with Liftoff and then again with TurboFan once it is hot, and keeps both: about
 *   9 MB at the first connection and 20 MB more under load. Liftoff alone costs about 3 MB, and
 *   the parser is a small part of a request's CPU. Wasm flags are read when a module is
 *   compiled, so setting it here, before the first connection, takes effect.
 * - The young generation's size is fixed when the isolate is created, so
 *   `--max-semi-space-size` cannot be set from here: it belongs on the node command line
 *   (the image's ENTRYPOINT) or in NODE_OPTIONS, as ENTRYPOINT_NODE_FLAGS.
 */
import { setFlagsFromString } from 'node:v8';

/** Flags for the `node` command that starts the sidecar (the Dockerfile's ENTRYPOINT). */
export const ENTRYPOINT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** Applies the flags that can still be set at run time; call before any connection opens. */
export function applyRuntimeFlags(): void {
  setFlagsFromString('--liftoff-only');
}
