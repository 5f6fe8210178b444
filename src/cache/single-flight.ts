/**
 * One exchange in flight per cache entry (STYLE habit 4): callers that arrive while it runs
 * share its promise. The run is detached from whoever started it, so a client that
 * disconnects never aborts the exchange others wait on.
 */

/** Something that holds at most one run in flight. */
export interface FlightHolder<T> {
  inflight: Promise<T> | undefined;
}

/** The holder's run in flight, or a new one started with `start`. */
export function singleFlight<T>(holder: FlightHolder<T>, start: () => Promise<T>): Promise<T> {
  if (holder.inflight) return holder.inflight;
  const run = start();
  holder.inflight = run;
  // Cleared in a separate step, so callers awaiting `run` see the holder's settled state first.
  void run.then(
    () => (holder.inflight = undefined),
    () => (holder.inflight = undefined),
  );
  return run;
}
