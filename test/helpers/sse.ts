// Reads a Server-Sent Events stream (the server's /v1/jobs/:id/events) to its end.

/** Reads an SSE stream until it ends; returns the events. */
export async function readEvents(url: string, init: RequestInit = {}, onEvent?: (type: string, data: any) => void): Promise<Array<{ type: string; data: any }>> {
  const res = await fetch(url, init);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const out: Array<{ type: string; data: any }> = [];
  const dec = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (block.startsWith(':')) continue;
      const type = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null');
      out.push({ type, data });
      onEvent?.(type, data);
    }
  }
  return out;
}
