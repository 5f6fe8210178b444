/**
 * Just enough PromQL reading to know which metrics and labels an expression names:
 * vector selectors (`name{label="v"}`), and the label lists of `by`, `without`, `on`,
 * `ignoring`, `group_left` and `group_right`. Functions, aggregations, keywords, numbers,
 * strings, durations and Grafana variables are recognised and skipped.
 */

export interface Selector {
  readonly metric: string;
  /** Label names used in the selector's matchers. */
  readonly labels: string[];
}

export interface ExpressionNames {
  readonly selectors: Selector[];
  /** Label names in grouping and vector-matching clauses. */
  readonly groupingLabels: string[];
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'atan2']);
/** Aggregation operators: followed by `(` or by a `by`/`without` clause. */
const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']);
const LABEL_LIST_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const IDENT = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;

/** Grafana's `$var`, `${var}` and `[[var]]` become a neutral token before parsing. */
function withoutGrafanaVariables(expr: string): string {
  return expr.replace(/\[\[\w+\]\]|\$\{\w+(?::\w+)?\}|\$\w+/g, '5m');
}

export function namesIn(rawExpr: string): ExpressionNames {
  const expr = withoutGrafanaVariables(rawExpr);
  const selectors: Selector[] = [];
  const groupingLabels: string[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < expr.length && /\s/.test(expr[i]!)) i++;
  };
  const readIdent = (): string | undefined => {
    IDENT.lastIndex = i;
    const m = IDENT.exec(expr);
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  const skipString = () => {
    const quote = expr[i]!;
    i++;
    while (i < expr.length && expr[i] !== quote) i += expr[i] === '\\' ? 2 : 1;
    i++;
  };
  /** `{a="x", b!~"y"}` starting at `{`: the label names. */
  const readMatchers = (): string[] => {
    const labels: string[] = [];
    i++; // {
    for (;;) {
      skipSpace();
      if (i >= expr.length) throw new Error(`unclosed { in ${rawExpr}`);
      if (expr[i] === '}') {
        i++;
        return labels;
      }
      if (expr[i] === ',') {
        i++;
        continue;
      }
      const label = readIdent();
      if (!label) throw new Error(`expected a label name at ${i} in ${rawExpr}`);
      labels.push(label);
      skipSpace();
      const op = /^(=~|!~|!=|=)/.exec(expr.slice(i));
      if (!op) throw new Error(`expected a matcher operator after ${label} in ${rawExpr}`);
      i += op[0].length;
      skipSpace();
      if (expr[i] !== '"' && expr[i] !== "'" && expr[i] !== '`') throw new Error(`expected a string after ${label}${op[0]} in ${rawExpr}`);
      skipString();
    }
  };
  const readLabelList = (): string[] => {
    skipSpace();
    if (expr[i] !== '(') return []; // group_left without a list
    i++;
    const labels: string[] = [];
    for (;;) {
      skipSpace();
      if (expr[i] === ')') {
        i++;
        return labels;
      }
      if (expr[i] === ',') {
        i++;
        continue;
      }
      const label = readIdent();
      if (!label) throw new Error(`expected a label in a list at ${i} in ${rawExpr}`);
      labels.push(label);
    }
  };

  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c) || '()+-*/%^,<>=!'.includes(c)) {
      i++;
    } else if (c === '"' || c === "'" || c === '`') {
      skipString();
    } else if (c === '[') {
      i = expr.indexOf(']', i) + 1; // a range or subquery duration
      if (i === 0) throw new Error(`unclosed [ in ${rawExpr}`);
    } else if (c === '{') {
      selectors.push({ metric: '', labels: readMatchers() }); // {__name__=...} style: no name
    } else if (/[0-9.]/.test(c)) {
      const m = /^(?:0x[0-9a-f]+|\d*\.?\d+(?:e[+-]?\d+)?(?:ms|[smhdwy])*)/i.exec(expr.slice(i));
      i += m ? Math.max(m[0].length, 1) : 1;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const ident = readIdent()!;
      const lower = ident.toLowerCase();
      if (LABEL_LIST_KEYWORDS.has(lower)) {
        groupingLabels.push(...readLabelList());
        continue;
      }
      if (KEYWORDS.has(lower) || AGGREGATIONS.has(lower) || ['inf', 'nan'].includes(lower)) continue;
      skipSpace();
      if (expr[i] === '(') continue; // a function or an aggregation
      const labels = expr[i] === '{' ? readMatchers() : [];
      selectors.push({ metric: ident, labels });
    } else {
      throw new Error(`unexpected "${c}" at ${i} in ${rawExpr}`);
    }
  }
  return { selectors, groupingLabels };
}

export interface ExposedMetrics {
  /** Sample names a query may use: counters and gauges as is, histograms' _bucket/_sum/_count, summaries' too. */
  readonly names: Set<string>;
  /** Label names seen on the samples of each name. */
  readonly labels: Map<string, Set<string>>;
}

/** The Prometheus text format: # TYPE lines give the families, sample lines the labels. */
export function parseExposition(text: string): ExposedMetrics {
  const names = new Set<string>();
  const labels = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      const [, family, kind] = type as unknown as [string, string, string];
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(family + s);
      else if (kind === 'summary') for (const s of ['', '_sum', '_count']) names.add(family + s);
      else names.add(family);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+/.exec(line);
    if (!sample) continue;
    const set = labels.get(sample[1]!) ?? new Set<string>();
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) set.add(m[1]!);
    labels.set(sample[1]!, set);
  }
  return { names, labels };
}
