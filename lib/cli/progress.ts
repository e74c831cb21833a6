/**
 * Progress display on stderr: a redrawn bar on a terminal, occasional plain lines otherwise.
 * @internal
 * @packageDocumentation
 */

/** Formats milliseconds as `1.2s`, `3m04s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return `${m}m${String(s).padStart(2, '0')}s`;
}

/** Formats bytes as `12.3 MB` (decimal units). */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** A progress line on a stream. */
export class ProgressBar {
  private lastLine = '';
  private lastPlain = 0;
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, private readonly enabled = true) {}

  /** Shows `label [#####.....] done/total  extra`. */
  update(label: string, done: number, total: number, extra = ''): void {
    this.draw(label, total > 0 ? done / total : 0, `${done}/${total}`, extra);
  }

  /** Shows `label [#####.....] 42%  extra` for a fraction in [0, 1]. */
  fraction(label: string, f: number, extra = ''): void {
    this.draw(label, f, `${Math.round(Math.min(1, Math.max(0, f)) * 100)}%`, extra, f >= 1);
  }

  private draw(label: string, frac: number, count: string, extra: string, complete = frac >= 1): void {
    if (!this.enabled) return;
    frac = Math.min(1, Math.max(0, frac));
    const width = 24;
    const fill = Math.round(frac * width);
    const line = `${label.padEnd(8)} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${count}${extra ? `  ${extra}` : ''}`;
    if (line === this.lastLine) return;
    this.lastLine = line;
    if (this.stream.isTTY) {
      const cols = this.stream.columns || 100;
      this.stream.write(`\r${line.slice(0, cols - 1).padEnd(Math.min(cols - 1, 80))}`);
      this.drawn = true;
    } else {
      // Not a terminal (a log file, a test): one line per second, plus every phase's end.
      const now = Date.now();
      if (complete || now - this.lastPlain >= 1000) {
        this.lastPlain = now;
        this.stream.write(`${line}\n`);
      }
    }
  }

  /** Ends the bar's line (before printing anything else). */
  done(): void {
    if (this.drawn && this.stream.isTTY) this.stream.write('\n');
    this.drawn = false;
    this.lastLine = '';
  }
}
