/**
 * `sts.clientAuth` (or a profile's, issue 13) from the config, as a ClientAuth value: secrets and keys opened from
 * their sources (watched when they are files), the identity's key for private_key_jwt
 * when no key of its own is given.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { Config, StsConfig } from '../config/schema.js';
import { openSecretSource } from '../credentials/secret-source.js';
import { ConfigError } from '../errors.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Redactor } from '../log/redact.js';
import type { WorkloadIdentity } from '../tls/identity.js';
import {
  basicCredentials,
  clientSecretBasic,
  clientSecretPost,
  defaultJwsAlgorithm,
  noClientAuth,
  privateKeyJwt,
  tlsClientAuth,
  type ClientAuth,
} from './client-auth.js';

export function clientAuthFromConfig(
  config: Config,
  identity: WorkloadIdentity | undefined,
  resources: Deferrer,
  onError: (err: unknown) => void,
  redactor: Redactor,
): Promise<ClientAuth> {
  return clientAuthFromProfile(config.sts, 'sts', identity, resources, onError, redactor);
}

/** One STS profile's client auth (issue 13); `keyPath` is where the profile is written (`sts`, `stsProfiles.NAME`). */
export async function clientAuthFromProfile(
  sts: StsConfig,
  keyPath: string,
  identity: WorkloadIdentity | undefined,
  resources: Deferrer,
  onError: (err: unknown) => void,
  redactor: Redactor,
): Promise<ClientAuth> {
  const auth = sts.clientAuth;
  if (auth.method === 'none') return noClientAuth(auth.clientId);
  if (auth.method === 'tls_client_auth') return tlsClientAuth(auth.clientId);
  if (auth.method === 'private_key_jwt') {
    let key: () => KeyObject;
    if (auth.key) {
      const keyKey = `${keyPath}.clientAuth.key`;
      const keySource = await openSecretSource(auth.key, { keyPath: keyKey, onError });
      resources.defer(() => keySource.close());
      let current = parsePrivateKey(keySource.current(), keyKey);
      keySource.onChange(() => {
        try {
          current = parsePrivateKey(keySource.current(), keyKey);
        } catch (err) {
          onError(err);
        }
      });
      key = () => current;
    } else if (identity) {
      key = () => identity.current().privateKey;
    } else {
      throw new ConfigError(`${keyPath}.clientAuth.key`, 'private_key_jwt needs a signing key: give clientAuth.key or an identity');
    }
    return privateKeyJwt({
      clientId: auth.clientId,
      key,
      algorithm: auth.algorithm ?? defaultJwsAlgorithm(key()),
      keyId: auth.keyId,
      audience: auth.audience ?? sts.url.href,
      lifetimeSeconds: auth.assertionLifetimeSeconds,
    });
  }
  const secret = await openSecretSource(auth.clientSecret, { keyPath: `${keyPath}.clientAuth.clientSecret`, onError });
  resources.defer(() => secret.close());
  if (auth.method === 'client_secret_basic') {
    // An STS that echoes its Authorization header shows base64(urlencode(id):urlencode(secret)) (RFC 6749 2.3.1).
    const clientId = auth.clientId;
    redactor.track(secret, (value) => [basicCredentials(clientId, value)]);
    return clientSecretBasic(clientId, secret);
  }
  redactor.track(secret);
  return clientSecretPost(auth.clientId, secret);
}

function parsePrivateKey(pem: string, keyPath: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new ConfigError(keyPath, `not a PEM private key: ${(err as Error).message}`, { cause: err });
  }
}
