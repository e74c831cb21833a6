/**
 * Terminal safety: strings that come from files (metadata keys and values, tensor names) or from anywhere else
 * outside the program are escaped before they reach a terminal, so a file cannot retitle, clear or recolour it.
 * @internal
 * @packageDocumentation
 */

// C0 controls (except tab and newline when allowed), DEL, C1 controls (U+0080-U+009F; U+009B is CSI to some
// terminals), bidirectional overrides/isolates, and lone surrogates.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const UNSAFE_WITH_NL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escapeChar(c: string): string {
  const cp = c.charCodeAt(0);
  return cp < 0x100 ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
}

/**
 * `s` safe to print: unsafe characters become `\xNN` / `\u{NNNN}` escapes; longer than `max` characters, the
 * middle is cut (the head and the tail stay). Newlines and tabs are kept when `keepNewlines` (messages).
 */
export function printable(s: string, max = 4096, keepNewlines = false): string {
  let t = s;
  if (t.length > max) {
    const half = Math.max(16, Math.floor(max / 2) - 16);
    t = `${t.slice(0, half)} [... ${t.length - 2 * half} characters ...] ${t.slice(t.length - half)}`;
  }
  return t.replace(keepNewlines ? UNSAFE : UNSAFE_WITH_NL, escapeChar);
}

/** JSON for a terminal: JSON.stringify escapes C0 controls but not DEL, C1 controls or bidi overrides. */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
