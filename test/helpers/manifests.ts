/**
 * Reading the deployment files the way the tools that apply them do: a small kustomize
 * (resources, strategic-merge patches, images, labels: what k8s/ uses, compared with the
 * real `kubectl kustomize` in deploy-k8s.test.ts when kubectl is installed), schema
 * validation with kubernetes-models (ajv, compiled from the Kubernetes OpenAPI), and a
 * strict-field check: the TypeScript compiler's excess-property check against the same
 * package's interfaces, because the OpenAPI schemas accept unknown fields that the API
 * server's strict field validation (`kubectl apply`, 1.27+) rejects.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';

/** The repository root (this file runs from dist/test/helpers/). */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export type Obj = Record<string, unknown>;

export interface Manifest {
  readonly file: string;
  readonly object: Obj;
}

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every YAML document of a file, as plain objects; a parse error fails loudly. */
export async function readYamlDocuments(file: string): Promise<Obj[]> {
  // merge: the `<<` keys compose files use (YAML 1.1, which kubectl and compose read).
  const docs = parseAllDocuments(await readFile(file, 'utf8'), { uniqueKeys: true, merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: Obj[] = [];
  for (const doc of list) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (!isObj(value)) throw new Error(`${file}: a document is not a mapping`);
    out.push(value);
  }
  return out;
}

export async function readYaml(file: string): Promise<Obj> {
  const [doc, ...more] = await readYamlDocuments(file);
  if (!doc || more.length > 0) throw new Error(`${file}: expected exactly one YAML document`);
  return doc;
}

/** Every *.yaml / *.yml below `dir`, recursively. */
export async function yamlFilesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await yamlFilesUnder(path)));
    else if (/\.ya?ml$/.test(entry.name)) out.push(path);
  }
  return out.sort();
}

// ---- kustomize, the subset k8s/ uses ------------------------------------------------

export interface KustomizeResult {
  readonly objects: Manifest[];
  /** Every file the build read: kustomization files, resources and patches. */
  readonly filesRead: Set<string>;
}

const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources', 'patches', 'images', 'labels']);

export async function kustomize(dir: string): Promise<KustomizeResult> {
  const filesRead = new Set<string>();
  const objects = await build(resolve(dir), filesRead);
  return { objects, filesRead };
}

async function build(dir: string, filesRead: Set<string>): Promise<Manifest[]> {
  const file = join(dir, 'kustomization.yaml');
  filesRead.add(file);
  const k = await readYaml(file);
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_KEYS.has(key)) throw new Error(`${file}: this test's kustomize does not implement "${key}"`);
  }
  const objects: Manifest[] = [];
  for (const entry of asArray(k['resources'])) {
    if (typeof entry !== 'string') throw new Error(`${file}: resources entries must be paths`);
    const path = resolve(dir, entry);
    if ((await stat(path)).isDirectory()) {
      objects.push(...(await build(path, filesRead)));
    } else {
      filesRead.add(path);
      for (const object of await readYamlDocuments(path)) objects.push({ file: path, object });
    }
  }
  for (const patch of asArray(k['patches'])) {
    if (!isObj(patch) || typeof patch['path'] !== 'string') throw new Error(`${file}: only patches with a path are implemented`);
    const path = resolve(dir, patch['path']);
    filesRead.add(path);
    const body = await readYaml(path);
    const target = isObj(patch['target']) ? patch['target'] : { kind: body['kind'], name: (body['metadata'] as Obj | undefined)?.['name'] };
    const matches = objects.filter((m) => m.object['kind'] === target['kind'] && metadataOf(m.object)['name'] === target['name']);
    if (matches.length !== 1) throw new Error(`${path}: the patch target matches ${matches.length} objects`);
    const index = objects.indexOf(matches[0]!);
    objects[index] = { file: matches[0]!.file, object: strategicMerge(matches[0]!.object, body) as Obj };
  }
  for (const image of asArray(k['images'])) {
    if (!isObj(image) || typeof image['name'] !== 'string') continue;
    for (const m of objects) {
      for (const c of podContainers(m.object)) {
        const [name] = String(c['image']).split(':');
        if (name === image['name']) c['image'] = `${image['newName'] ?? name}:${image['newTag'] ?? 'latest'}`;
      }
    }
  }
  for (const set of asArray(k['labels'])) {
    if (!isObj(set) || !isObj(set['pairs'])) continue;
    for (const m of objects) {
      const meta = metadataOf(m.object);
      meta['labels'] = { ...(isObj(meta['labels']) ? meta['labels'] : {}), ...set['pairs'] };
    }
  }
  return objects;
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : v === undefined ? [] : [v];
}

/** Lists of these objects merge element-wise by `name` (their patchMergeKey), others are replaced. */
const MERGE_BY_NAME = new Set(['containers', 'initContainers', 'env', 'volumes', 'volumeMounts', 'ports']);

export function strategicMerge(base: unknown, patch: unknown, key = ''): unknown {
  if (isObj(base) && isObj(patch)) {
    const out: Obj = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? strategicMerge(base[k], v, k) : structuredClone(v);
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch) && MERGE_BY_NAME.has(key)) {
    const out = base.map((e) => structuredClone(e) as unknown);
    for (const item of patch) {
      const name = isObj(item) ? item['name'] : undefined;
      const at = out.findIndex((e) => isObj(e) && e['name'] === name);
      if (at >= 0) out[at] = strategicMerge(out[at], item, '');
      else out.push(structuredClone(item));
    }
    return out;
  }
  return structuredClone(patch);
}

// ---- reading objects ------------------------------------------------------------------

export function metadataOf(object: Obj): Obj {
  if (!isObj(object['metadata'])) object['metadata'] = {};
  return object['metadata'] as Obj;
}

/** The pod template's spec of a Deployment or Job, or undefined for other kinds. */
export function podSpecOf(object: Obj): Obj | undefined {
  const template = (object['spec'] as Obj | undefined)?.['template'];
  return isObj(template) && isObj(template['spec']) ? template['spec'] : undefined;
}

export function podTemplateOf(object: Obj): Obj | undefined {
  const template = (object['spec'] as Obj | undefined)?.['template'];
  return isObj(template) ? template : undefined;
}

export function podContainers(object: Obj): Obj[] {
  const spec = podSpecOf(object);
  if (!spec) return [];
  return [...asArray(spec['initContainers']), ...asArray(spec['containers'])].filter(isObj);
}

export function find(objects: readonly Manifest[], kind: string, name?: string): Manifest[] {
  return objects.filter((m) => m.object['kind'] === kind && (name === undefined || metadataOf(m.object)['name'] === name));
}

// ---- schema validation ------------------------------------------------------------------

interface ModelModule {
  readonly module: string;
  readonly name: string;
}

/** Where kubernetes-models keeps the class and interface for an apiVersion + kind. */
export function modelFor(apiVersion: string, kind: string): ModelModule {
  if (apiVersion.startsWith('monitoring.coreos.com/')) {
    return { module: `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`, name: kind };
  }
  return { module: `kubernetes-models/${apiVersion}/${kind}`, name: kind };
}

/** ajv validation of one object against its Kubernetes schema; resolves to the error text, or undefined. */
export async function schemaErrors(object: Obj): Promise<string | undefined> {
  const { module, name } = modelFor(String(object['apiVersion']), String(object['kind']));
  const loaded = (await import(module)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = loaded[name];
  if (!Model) throw new Error(`${module} has no ${name}`);
  try {
    new Model(structuredClone(object)).validate();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Type-checks each object as a literal of its kubernetes-models interface, so a field the
 * API does not know (a typo such as `restartpolicy`, or a field in the wrong place) is an
 * error here as it is for the API server. Returns one line per problem.
 */
export function strictFieldErrors(manifests: readonly Manifest[]): string[] {
  const virtual = join(REPO, '__manifest_typecheck__.ts');
  const lines: string[] = [];
  manifests.forEach((m, i) => {
    const { module, name } = modelFor(String(m.object['apiVersion']), String(m.object['kind']));
    lines.push(`import type { I${name} as T${i} } from '${module}';`);
    // The label names the file in diagnostics; JSON is a valid TypeScript object literal.
    lines.push(`export const ${identifierFor(m, i)}: T${i} = ${JSON.stringify(m.object, null, 1)};`);
  });
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2022.d.ts'],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile: hostReadFile } = host;
  host.getSourceFile = (file, language, ...rest) =>
    resolve(file) === virtual ? ts.createSourceFile(file, source, language, true) : getSourceFile.call(host, file, language, ...rest);
  host.fileExists = (file) => resolve(file) === virtual || fileExists.call(host, file);
  host.readFile = (file) => (resolve(file) === virtual ? source : hostReadFile.call(host, file));
  const program = ts.createProgram([virtual], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (!d.file || d.start === undefined) return text;
    const before = d.file.text.slice(0, d.start);
    const declaration = /export const (\w+):[^\n]*$/m.exec(before.slice(before.lastIndexOf('export const ')));
    return `${declaration?.[1] ?? 'manifest'}: ${text}`;
  });
}

function identifierFor(m: Manifest, i: number): string {
  const file = relative(REPO, m.file).replace(/[^A-Za-z0-9]/g, '_');
  return `${file}__${String(m.object['kind'])}_${i}`;
}

export function repoPath(...parts: string[]): string {
  return join(REPO, ...parts);
}

export function relativeToRepo(path: string): string {
  return relative(REPO, path) || '.';
}
