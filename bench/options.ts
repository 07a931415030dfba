// Integer command-line options of the benchmarks, checked alike: a clear
// message names the option and the value it got.

/** `--name` as an integer from `min` to `max`. */
export function intOption(name: string, text: string | undefined, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const v = Number(text);
  if (text === undefined || !Number.isInteger(v) || v < min || v > max) {
    throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return v;
}

/** `--name` as a comma-separated list of such integers. */
export function intListOption(name: string, text: string, min = 1, max = Number.MAX_SAFE_INTEGER): number[] {
  return text.split(',').map((t) => intOption(name, t, min, max));
}
