/**
 * A stand-in app: runs one unmodified SDK client against the sidecar and prints what it
 * got as one JSON line. Run as a child process so each SDK reads its environment
 * (GCE_METADATA_HOST, AZURE_POD_IDENTITY_AUTHORITY_HOST) as it would in a real pod, and
 * so module-level caches (gcp-metadata's isAvailable, MSAL's token cache) start empty.
 *
 *   node sdk-client.js gcp-metadata
 *   node sdk-client.js google-compute COUNT
 *   node sdk-client.js azure-mi SCOPE COUNT [CLIENT_ID]
 */
const [scenario = '', ...args] = process.argv.slice(2);

async function gcpMetadata(): Promise<unknown> {
  const gcp = await import('gcp-metadata');
  const available = await gcp.isAvailable();
  const [projectId, numericProjectId, email, universe, token] = await Promise.all([
    gcp.project('project-id'),
    gcp.project('numeric-project-id'),
    gcp.instance('service-accounts/default/email'),
    gcp.universe('universe-domain'),
    gcp.instance({ property: 'service-accounts/default/token', params: { scopes: 'https://www.googleapis.com/auth/cloud-platform' } }),
  ]);
  return { available, projectId: String(projectId), numericProjectId: String(numericProjectId), email, universe, token };
}

async function googleCompute(count: number): Promise<unknown> {
  const { GoogleAuth, Compute } = await import('google-auth-library');
  const auth = new GoogleAuth({ scopes: ['https://www.googleapis.com/auth/cloud-platform'] });
  const client = await auth.getClient();
  const [projectId, credentials, first, more] = await Promise.all([
    auth.getProjectId(),
    auth.getCredentials(),
    client.getAccessToken(),
    // Separate clients, so each asks the metadata server itself, all at once.
    Promise.all(Array.from({ length: count }, () => new Compute({ scopes: ['https://www.googleapis.com/auth/cloud-platform'] }).getAccessToken())),
  ]);
  return {
    isCompute: client instanceof Compute,
    projectId,
    email: credentials.client_email,
    token: first.token,
    expiryDate: client.credentials.expiry_date,
    tokens: more.map((r) => r.token),
  };
}

async function azureManagedIdentity(scope: string, count: number, clientId: string | undefined): Promise<unknown> {
  const { ManagedIdentityCredential } = await import('@azure/identity');
  const make = () => (clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential());
  try {
    const tokens = await Promise.all(Array.from({ length: count }, () => make().getToken(scope)));
    return { tokens: tokens.map((t) => ({ token: t.token, expiresOnTimestamp: t.expiresOnTimestamp })) };
  } catch (err) {
    return { error: (err as Error).name, message: (err as Error).message };
  }
}

async function main(): Promise<unknown> {
  switch (scenario) {
    case 'gcp-metadata':
      return gcpMetadata();
    case 'google-compute':
      return googleCompute(Number(args[0] ?? 1));
    case 'azure-mi':
      return azureManagedIdentity(args[0] ?? '', Number(args[1] ?? 1), args[2]);
    default:
      throw new Error(`unknown scenario "${scenario}"`);
  }
}

main().then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
