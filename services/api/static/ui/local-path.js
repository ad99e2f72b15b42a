// The one rule for URLs a page follows that a user or a task gave (a sign-in's `next`, a task's
// `ui.next_url`, an outcome's `next_url`): a path on this site, or nothing. The same rule as
// shared/local_path.py, case for case (tests/data/local_paths.json).
//
// A browser reads a URL as the WHATWG URL standard says: it strips leading and trailing C0
// controls and spaces, removes every tab, CR and LF, and reads `//host` or `/\host` as another
// site. So the rule normalises first, judges the result, and returns the normalised path.

/** `url` as the URL parser sees it before parsing. */
export function normalised(url) {
  return url.replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, "").replace(/[\t\n\r]/g, "");
}

/** The same-site path `url` names, normalised; null if a browser would leave the site for it. */
export function localPath(url) {
  if (typeof url !== "string") return null;
  const path = normalised(url);
  if (!path.startsWith("/") || path[1] === "/" || path[1] === "\\") return null;
  if (/[\x00-\x1f\x7f]/.test(path)) return null;
  return path;
}
