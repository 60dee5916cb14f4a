// A real OpenID Provider for the tests: panva's certified `oidc-provider` (npm), with its
// development login pages (any login name, any password), one confidential client, PKCE
// required, and accounts read from a JSON file at every login, so a test changes a
// person's groups at the "IdP" by rewriting the file.
//
//   node oidc_provider.mjs <module dir> <port> <accounts.json> <redirect uri>
//
// <module dir>/node_modules/oidc-provider is the installed package (tests/oidc_idp.py
// installs it). Prints "ready <issuer>" once it listens.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [moduleDir, port, accountsFile, redirectUri] = process.argv.slice(2);
const { default: Provider } = await import(
  pathToFileURL(join(moduleDir, 'node_modules', 'oidc-provider', 'lib', 'index.js')).href
);

// A signing key of this instance's own: two instances never trust each other's tokens.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' };

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'ade-dashboard',
      client_secret: 'ade-test-secret',
      redirect_uris: [redirectUri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
      require_auth_time: true,
    },
  ],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  // Profile and groups claims in the ID token itself (what the dashboard reads).
  conformIdTokenClaims: false,
  cookies: { keys: ['ade-test-cookie-key'] },
  jwks: { keys: [signingKey] },
  async findAccount(ctx, id) {
    const accounts = JSON.parse(readFileSync(accountsFile, 'utf8'));
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
});
provider.listen(Number(port), '127.0.0.1', () => console.log(`ready ${issuer}`));
