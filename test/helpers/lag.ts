// Event-loop responsiveness: how late a 10 ms interval timer fires while `work` runs.

/** Runs `work` while a 10 ms setInterval timer measures its own lateness; returns the largest lag in ms. */
export async function maxEventLoopLag(work: () => Promise<unknown>): Promise<number> {
  let maxLag = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxLag = Math.max(maxLag, now - last - 10);
    last = now;
  }, 10);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return maxLag;
}
