// Small statistics shared by the benchmark tables.

/** median of the finite numbers in `xs` (the mean of the middle two for an even count); NaN when none. */
export function median(xs) {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
