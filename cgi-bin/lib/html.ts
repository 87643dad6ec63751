// Small HTML helpers shared by the cgi-bin examples (a library, not an app: the build skips lib/).

/** escapeHtml makes text safe inside HTML elements and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** page wraps a body in a minimal HTML5 document. */
export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}code,td{font-family:monospace}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`;
}

/** HTML_UTF8 is the Content-Type of the HTML pages. */
export const HTML_UTF8: [string, string] = ['Content-Type', 'text/html; charset=utf-8'];
