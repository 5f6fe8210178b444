/**
 * Token-cache micro-benchmark: what one lookup costs in a plain Map (what the sidecar
 * uses) versus node-cache, with its default `useClones: true` and with `useClones: false`.
 *
 * The cached value is shaped like the sidecar's IssuedToken (an ~800-character access
 * token plus five small fields) and the key like the sidecar's cache key (the route's
 * JSON exchange parameters + "|" + a sha256 digest of the subject token), built afresh
 * for every lookup exactly as token-provider.ts builds it, so every variant pays the same
 * key cost and the differences are the container's. A "Map.get, constant key" row shows
 * what building the key costs on its own.
 */
import { createHash } from 'node:crypto';
import NodeCache from 'node-cache';
import { makeBenchToken } from './sts-stub.js';

interface TokenLike {
  readonly accessToken: string;
  readonly issuedTokenType: string;
  readonly tokenType: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly scope: string | undefined;
}

export interface CacheVariantResult {
  readonly name: string;
  readonly lookupsPerSecond: number;
  readonly nsPerLookup: number;
}

export interface CacheBenchOptions {
  /** Measuring time per variant per round (ms). */
  readonly sliceMs?: number;
  /** Rounds, variants interleaved; the median round is reported. */
  readonly rounds?: number;
  /** Entries in each cache (other routes / other subjects); the looked-up one is among them. */
  readonly entries?: number;
}

type Lookup = (routeKey: string, digest: string) => TokenLike | undefined;

function tokenFor(now: number): TokenLike {
  return {
    accessToken: makeBenchToken(),
    issuedTokenType: 'urn:ietf:params:oauth:token-type:access_token',
    tokenType: 'Bearer',
    issuedAt: now,
    expiresAt: now + 3_600_000,
    scope: undefined,
  };
}

/** Runs `lookup` in batches for about `ms`; returns ns per call. The checksum keeps the JIT from dropping the work. */
function time(lookup: Lookup, routeKey: string, digest: string, ms: number, sink: { n: number }): number {
  const batch = 10_000;
  let calls = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let now = start;
  const t = Date.now();
  while (now < deadline) {
    for (let i = 0; i < batch; i++) {
      const token = lookup(routeKey, digest);
      // What the sidecar does with a hit: check validity, read the token.
      if (token !== undefined && t < token.expiresAt) sink.n += token.accessToken.length;
      else sink.n -= 1;
    }
    calls += batch;
    now = process.hrtime.bigint();
  }
  return Number(now - start) / calls;
}

export function runCacheBench(options: CacheBenchOptions = {}): CacheVariantResult[] {
  const sliceMs = options.sliceMs ?? 250;
  const rounds = options.rounds ?? 5;
  const entries = options.entries ?? 8;
  const now = Date.now();

  // Key parts as token-provider.ts makes them: JSON of [route name, exchange params], then the subject digest.
  const routeKeys = Array.from({ length: entries }, (_, i) =>
    JSON.stringify([i === 0 ? 'bench' : `route-${i}`, { audience: ['bench'], requestedTokenType: 'urn:ietf:params:oauth:token-type:access_token' }]),
  );
  const digest = createHash('sha256').update('iamtheeggman').digest('base64url');
  const keyOf = (routeKey: string, d: string) => `${routeKey}|${d}`;
  const tokens = routeKeys.map(() => tokenFor(now));

  const map = new Map<string, TokenLike>();
  const cloning = new NodeCache({ useClones: true });
  const sharing = new NodeCache({ useClones: false });
  routeKeys.forEach((rk, i) => {
    map.set(keyOf(rk, digest), tokens[i]!);
    cloning.set(keyOf(rk, digest), tokens[i]!);
    sharing.set(keyOf(rk, digest), tokens[i]!);
  });
  const constantKey = keyOf(routeKeys[0]!, digest);

  const variants: Array<{ name: string; lookup: Lookup }> = [
    { name: 'Map.get', lookup: (rk, d) => map.get(keyOf(rk, d)) },
    { name: 'node-cache useClones:true (default)', lookup: (rk, d) => cloning.get<TokenLike>(keyOf(rk, d)) },
    { name: 'node-cache useClones:false', lookup: (rk, d) => sharing.get<TokenLike>(keyOf(rk, d)) },
    { name: 'Map.get, constant key (no key building)', lookup: () => map.get(constantKey) },
  ];

  // Sanity: every variant must find the same token (a clone is equal, not identical).
  for (const v of variants) {
    const found = v.lookup(routeKeys[0]!, digest);
    if (found?.accessToken !== tokens[0]!.accessToken) throw new Error(`cache bench: ${v.name} did not return the cached token`);
  }

  const sink = { n: 0 };
  const samples = variants.map(() => [] as number[]);
  // A first short pass per variant so every one is JIT-compiled before it is timed.
  for (const v of variants) time(v.lookup, routeKeys[0]!, digest, 50, sink);
  for (let r = 0; r < rounds; r++) {
    variants.forEach((v, i) => samples[i]!.push(time(v.lookup, routeKeys[0]!, digest, sliceMs, sink)));
  }
  cloning.close();
  sharing.close();
  if (sink.n === 0) throw new Error('cache bench: checksum is zero');

  return variants.map((v, i) => {
    const sorted = samples[i]!.sort((a, b) => a - b);
    const ns = sorted[Math.floor(sorted.length / 2)]!;
    return { name: v.name, nsPerLookup: Math.round(ns * 10) / 10, lookupsPerSecond: Math.round(1e9 / ns) };
  });
}
