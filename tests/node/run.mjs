// One step of a flow through the official JavaScript clients, for tests/compat/test_auth_js_pkce.py (and
// test_supabase_auth_py_phone.py's sign-in by SMS):
//   node run.mjs '<step as JSON>'
// The step names the server (url: the /auth/v1 base; base: the site URL supabase-js appends /auth/v1 to),
// the API key, a state file and an action. The state file holds what a browser would keep between the
// steps of a flow (auth-js's storage: the PKCE code verifier and the session; @supabase/ssr's cookie
// jar), so each step can run in a fresh process. Prints one JSON line: {data, error, events}.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { AuthClient } from '@supabase/auth-js'
import { createServerClient } from '@supabase/ssr'

const step = JSON.parse(process.argv[2])
const state = existsSync(step.state) ? JSON.parse(readFileSync(step.state, 'utf8')) : { storage: {}, cookies: {} }
const save = () => writeFileSync(step.state, JSON.stringify(state))
const events = []

// auth-js's storage, kept in the state file.
const storage = {
  getItem: (key) => state.storage[key] ?? null,
  setItem: (key, value) => {
    state.storage[key] = value
    save()
  },
  removeItem: (key) => {
    delete state.storage[key]
    save()
  },
}

function authClient() {
  const client = new AuthClient({
    url: step.url,
    headers: { apikey: step.key, Authorization: `Bearer ${step.key}` },
    storage,
    flowType: step.flow_type ?? 'pkce',
    autoRefreshToken: false,
    persistSession: true,
    detectSessionInUrl: false,
    experimental: step.experimental ?? {},
  })
  client.onAuthStateChange((event) => events.push(event))
  return client
}

// @supabase/ssr on a server: each request a new client over the request's cookies; what it sets goes
// back into the jar (an empty value or maxAge 0 removes a cookie, as a browser would).
// Realtime is never used here; Node before 22 has no WebSocket of its own, which supabase-js insists on.
class NoWebSocket {
  constructor() {
    throw new Error('realtime is not used by these tests')
  }
}

function serverClient() {
  return createServerClient(step.base, step.key, {
    realtime: { transport: globalThis.WebSocket ?? NoWebSocket },
    cookies: {
      getAll: () => Object.entries(state.cookies).map(([name, value]) => ({ name, value })),
      setAll: (cookies) => {
        for (const { name, value, options } of cookies) {
          if (value === '' || options?.maxAge === 0) delete state.cookies[name]
          else state.cookies[name] = value
        }
        save()
      },
    },
  })
}

const redirect = step.redirect_to
const actions = {
  signUp: () => authClient().signUp({ email: step.email, password: step.password, options: { emailRedirectTo: redirect } }),
  signInWithOtp: () => authClient().signInWithOtp({ email: step.email, options: { emailRedirectTo: redirect } }),
  signInWithPhone: () => authClient().signInWithOtp({ phone: step.phone, options: { channel: step.channel ?? 'sms' } }),
  verifyPhone: () => authClient().verifyOtp({ phone: step.phone, token: step.token, type: step.type ?? 'sms' }),
  resetPasswordForEmail: () => authClient().resetPasswordForEmail(step.email, { redirectTo: redirect }),
  updateUser: () => authClient().updateUser(step.attributes, { emailRedirectTo: redirect }),
  exchangeCodeForSession: () =>
    authClient().exchangeCodeForSession(step.code, step.flow_id ? { flowId: step.flow_id } : undefined),
  getUser: () => authClient().getUser(),
  ssrSignInWithOtp: () => serverClient().auth.signInWithOtp({ email: step.email, options: { emailRedirectTo: redirect } }),
  ssrExchangeCodeForSession: () => serverClient().auth.exchangeCodeForSession(step.code),
  ssrGetUser: () => serverClient().auth.getUser(),
  // Passkeys and the WebAuthn factor (tests/compat/test_auth_js_passkeys.py): step.credential is what the
  // test's software authenticator answered, as a browser's PublicKeyCredential.toJSON() gives it.
  signInWithPassword: () => authClient().signInWithPassword({ email: step.email, password: step.password }),
  passkeyStartRegistration: () => authClient().passkey.startRegistration(),
  passkeyVerifyRegistration: () =>
    authClient().passkey.verifyRegistration({ challengeId: step.challenge_id, credential: step.credential }),
  passkeyStartAuthentication: () => authClient().passkey.startAuthentication(),
  passkeyVerifyAuthentication: () =>
    authClient().passkey.verifyAuthentication({ challengeId: step.challenge_id, credential: step.credential }),
  passkeyList: () => authClient().passkey.list(),
  passkeyUpdate: () => authClient().passkey.update({ passkeyId: step.passkey_id, friendlyName: step.friendly_name }),
  passkeyDelete: () => authClient().passkey.delete({ passkeyId: step.passkey_id }),
  adminListPasskeys: () => authClient().admin.passkey.listPasskeys({ userId: step.user_id }),
  adminDeletePasskey: () => authClient().admin.passkey.deletePasskey({ userId: step.user_id, passkeyId: step.passkey_id }),
  mfaWebauthnEnroll: () => authClient().mfa.webauthn.enroll({ friendlyName: step.friendly_name }),
  mfaChallenge: () => authClient().mfa.challenge({ factorId: step.factor_id, webauthn: step.webauthn }),
  mfaWebauthnVerify: () =>
    authClient().mfa.webauthn.verify({
      factorId: step.factor_id,
      challengeId: step.challenge_id,
      webauthn: { type: step.type, credential_response: { toJSON: () => step.credential } },
    }),
  mfaListFactors: () => authClient().mfa.listFactors(),
  // TOTP and recovery codes (tests/compat/test_auth_js_recovery_codes.py; step.experimental turns on
  // auth-js's mfa.recoveryCodes).
  mfaEnrollTotp: () => authClient().mfa.enroll({ factorType: 'totp' }),
  mfaChallengeAndVerify: () => authClient().mfa.challengeAndVerify({ factorId: step.factor_id, code: step.code }),
  recoveryCodesGenerate: () => authClient().mfa.recoveryCodes.generate({ friendlyName: step.friendly_name }),
  recoveryCodesStatus: () => authClient().mfa.recoveryCodes.getStatus(),
  recoveryCodesVerify: () => authClient().mfa.recoveryCodes.verify({ code: step.code }),
  recoveryCodesRegenerate: () => authClient().mfa.recoveryCodes.regenerate(),
  recoveryCodesUnenroll: () => authClient().mfa.recoveryCodes.unenroll(),
  mfaAal: () => authClient().mfa.getAuthenticatorAssuranceLevel(),
  // Third-party sign-in (tests/compat/test_oauth_clients.py): the URL to send the browser to, the session
  // an implicit flow's redirect carries, identities.
  signInWithOAuth: () =>
    authClient().signInWithOAuth({
      provider: step.provider,
      options: { redirectTo: redirect, skipBrowserRedirect: true, queryParams: step.query_params, scopes: step.scopes },
    }),
  setSession: () => authClient().setSession({ access_token: step.access_token, refresh_token: step.refresh_token }),
  signInWithIdToken: () =>
    authClient().signInWithIdToken({ provider: step.provider, token: step.token, nonce: step.nonce }),
  linkIdentity: () =>
    authClient().linkIdentity({ provider: step.provider, options: { redirectTo: redirect, skipBrowserRedirect: true } }),
  getUserIdentities: () => authClient().getUserIdentities(),
  // Sign in with a wallet (tests/compat/test_auth_js_web3.py): the message the test wrote and signed as a
  // wallet would; a Solana signature comes as base64 and goes to auth-js as the wallet's Uint8Array.
  signInWithWeb3: () =>
    authClient().signInWithWeb3({
      chain: step.chain,
      message: step.message,
      signature: step.chain === 'solana' ? new Uint8Array(Buffer.from(step.signature, 'base64')) : step.signature,
      options: step.captcha_token ? { captchaToken: step.captcha_token } : undefined,
    }),
  unlinkIdentity: async () => {
    const client = authClient()
    const { data, error } = await client.getUserIdentities()
    if (error) return { data: null, error }
    const identity = data.identities.find((each) => each.provider === step.provider)
    return identity ? client.unlinkIdentity(identity) : { data: null, error: { name: 'NoSuchIdentity' } }
  },
}

// WebAuthn options hold ArrayBuffers once auth-js deserialised them: printed back as base64url.
const base64url = (buffer) => Buffer.from(buffer).toString('base64url')
const printable = (key, value) =>
  value instanceof ArrayBuffer ? base64url(value) : ArrayBuffer.isView(value) ? base64url(value.buffer) : value

const { data, error } = await actions[step.action]()
await new Promise((resolve) => setTimeout(resolve, 0)) // let auth events already fired reach the listener
const failure = error && { name: error.name, code: error.code, status: error.status, message: error.message }
console.log(JSON.stringify({ data, error: failure, events }, printable))
