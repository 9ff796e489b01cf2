#!/usr/bin/env node
// Offline validation of the Kubernetes manifests in examples/k8s/ and lint of
// the Dockerfile, with no cluster and no network (tests/e2e/t_k8s.sh runs it).
//
//   node tests/k8s/validate.js              the full check (below); exit 0 if all hold
//   node tests/k8s/validate.js FILE...      validate these manifests (with examples/k8s/
//                                           as context for references); exit 1 if any fails
//
// Every document goes through four checks:
//   api     its apiVersion/kind is served by Kubernetes 1.30 (kubernetes-types 1.30
//           has a type for it), so removed versions such as batch/v1beta1 fail;
//   schema  kubernetes-models' validate() (OpenAPI schema: types, enums, required);
//   types   a TypeScript type check of the document as an object literal of its
//           kubernetes-types type: excess-property checks catch misspelled and
//           unknown fields at any depth, which the schema lets through;
//   rules   what the API server would still reject (podFailurePolicy needs
//           restartPolicy: Never, selectors match labels, mounts name volumes,
//           references resolve) and this project's policy for mlpipe pods
//           (non-root 10001, read-only root, no privilege escalation, drop ALL,
//           seccomp RuntimeDefault, resources, /tmp emptyDir, exit code 2 fails
//           the Job at once).
// The Dockerfile goes through dockerfilelint (FROM ${ARG} expanded with the
// ARG's default first) and the project's own rules for the image.
//
// The full check also asserts that every file in tests/k8s/broken/ FAILS, and
// for the reason its first line names ("# expect: TEXT"): TEXT must occur in
// one of the reported problems.
'use strict';

const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const ts = require('typescript');

const HERE = __dirname;
const ROOT = path.resolve(HERE, '../..');
const EXAMPLES = path.join(ROOT, 'examples/k8s');
const BROKEN = path.join(HERE, 'broken');
const DOCKERFILE = path.join(ROOT, 'Dockerfile');
const TYPES_DIR = path.join(HERE, 'node_modules/kubernetes-types');
const K8S_VERSION = JSON.parse(fs.readFileSync(path.join(TYPES_DIR, 'package.json'), 'utf8')).version;
const IMAGE_UID = 10001;

const rel = (f) => path.relative(ROOT, f);

// ------------------------------------------------------------------ loading

// Returns { docs: [{file, index, obj}], errors: [string] } for one YAML file.
function loadFile(file) {
    const out = { docs: [], errors: [] };
    let objs;
    try {
        objs = yaml.loadAll(fs.readFileSync(file, 'utf8'), null, { filename: rel(file) });
    } catch (e) {
        out.errors.push(`yaml: ${e.message.split('\n')[0]}`);
        return out;
    }
    objs.forEach((obj, i) => {
        if (obj === null || obj === undefined) return;   // empty document
        out.docs.push({ file, index: i, obj });
    });
    if (out.docs.length === 0) out.errors.push('yaml: no documents');
    return out;
}

function docName(d) {
    const o = d.obj || {};
    const n = o.metadata && o.metadata.name;
    return `${rel(d.file)}#${d.index} ${o.kind || '?'}${n ? ' ' + n : ''}`;
}

// ------------------------------------------------------------------ api + schema

// kubernetes-types directory for an apiVersion: "v1" -> core/v1,
// "batch/v1" -> batch/v1, "networking.k8s.io/v1" -> networking/v1.
function typesModule(apiVersion) {
    const parts = apiVersion.split('/');
    if (parts.length === 1) return `core/${parts[0]}`;
    if (parts.length !== 2) return null;
    let group = parts[0];
    if (group === 'internal.apiserver.k8s.io') group = 'apiserverinternal';
    else group = group.split('.')[0];
    return `${group}/${parts[1]}`;
}

function checkApi(obj) {
    const errs = [];
    if (typeof obj !== 'object' || Array.isArray(obj)) return { errs: ['document is not a mapping'] };
    const { apiVersion, kind } = obj;
    if (typeof apiVersion !== 'string' || !apiVersion) errs.push('api: apiVersion is missing');
    if (typeof kind !== 'string' || !kind) errs.push('api: kind is missing');
    if (errs.length) return { errs };
    const mod = typesModule(apiVersion);
    const dts = mod && path.join(TYPES_DIR, `${mod}.d.ts`);
    const text = dts && fs.existsSync(dts) ? fs.readFileSync(dts, 'utf8') : '';
    if (!text.includes(`export interface ${kind} {`)) {
        errs.push(`api: ${kind} ${apiVersion} is not served by Kubernetes ${K8S_VERSION} ` +
                  '(a removed, misspelled or unknown apiVersion/kind; e.g. CronJob is batch/v1 since 1.21, ' +
                  'batch/v1beta1 was removed in 1.25)');
        return { errs };
    }
    return { errs, mod };
}

function checkSchema(obj) {
    let Model;
    try {
        Model = require(`kubernetes-models/${obj.apiVersion}/${obj.kind}`)[obj.kind];
    } catch (e) {
        return [`schema: kubernetes-models has no ${obj.kind} ${obj.apiVersion}`];
    }
    try {
        new Model(obj).validate();
        return [];
    } catch (e) {
        if (!e.errors) return [`schema: ${e.message}`];
        return e.errors.map((x) => {
            const where = (x.instancePath || '').replace(/^\//, '').replace(/\//g, '.') || '(document)';
            let msg = x.message;
            if (x.params && x.params.allowedValues) msg += `: ${x.params.allowedValues.join(', ')}`;
            return `schema: ${where}: ${msg}`;
        });
    }
}

// ------------------------------------------------------------------ types

// Serializes a value as a TypeScript literal, one property or element per
// line, recording each line's path so a diagnostic can name the field.
function emitLiteral(value, pathSoFar, indent, lines, paths, prefix) {
    const pad = '  '.repeat(indent);
    const push = (text, p) => { lines.push(pad + text); paths.push(p); };
    if (Array.isArray(value)) {
        if (value.length === 0) { push(`${prefix}[]`, pathSoFar); return; }
        push(`${prefix}[`, pathSoFar);
        value.forEach((v, i) => emitLiteral(v, `${pathSoFar}[${i}]`, indent + 1, lines, paths, ''));
        push('],', pathSoFar);
    } else if (value !== null && typeof value === 'object') {
        const keys = Object.keys(value);
        if (keys.length === 0) { push(`${prefix}{},`, pathSoFar); return; }
        push(`${prefix}{`, pathSoFar);
        for (const k of keys) {
            const p = pathSoFar ? `${pathSoFar}.${k}` : k;
            const key = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? k : JSON.stringify(k);
            emitLiteral(value[k], p, indent + 1, lines, paths, `${key}: `);
        }
        push('},', pathSoFar);
    } else {
        push(`${prefix}${JSON.stringify(value === undefined ? null : value)},`, pathSoFar);
    }
}

// Type-checks every document in one TypeScript program (in memory).
// Returns a Map from document to its list of errors.
const libCache = new Map();      // real .d.ts files parsed once for every program
function checkTypes(items) {
    const result = new Map();
    const files = new Map();          // virtual file name -> { text, paths, item }
    const genDir = path.join(HERE, '__generated__');
    items.forEach((it, n) => {
        const lines = [], paths = [];
        lines.push(`import type { ${it.doc.obj.kind} as T } from "kubernetes-types/${it.mod}";`);
        paths.push('');
        lines.push('export const doc: T = ');
        paths.push('');
        emitLiteral(it.doc.obj, '', 0, lines, paths, '');
        lines[lines.length - 1] = lines[lines.length - 1].replace(/,$/, ';');
        files.set(path.join(genDir, `doc${n}.ts`), { text: lines.join('\n') + '\n', paths, item: it });
        result.set(it.doc, []);
    });
    if (files.size === 0) return result;

    const options = {
        strict: true, noEmit: true, skipLibCheck: true, types: [],
        target: ts.ScriptTarget.ES2020, lib: ['lib.es2020.d.ts'],
        module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10,
    };
    const host = ts.createCompilerHost(options);
    const { getSourceFile, fileExists, readFile } = host;
    host.fileExists = (f) => files.has(f) || fileExists.call(host, f);
    host.readFile = (f) => (files.has(f) ? files.get(f).text : readFile.call(host, f));
    host.getSourceFile = (f, lang, ...rest) => (files.has(f)
        ? ts.createSourceFile(f, files.get(f).text, lang, true)
        : libCache.get(f) || libCache.set(f, getSourceFile.call(host, f, lang, ...rest)).get(f));
    const program = ts.createProgram([...files.keys()], options, host);
    for (const d of ts.getPreEmitDiagnostics(program)) {
        // Long inferred object types say nothing useful: shorten them.
        const msg = ts.flattenDiagnosticMessageText(d.messageText, ' ')
            .replace(/'\{[^']{40,}\}'/g, "'{...}'");
        const f = d.file && files.get(d.file.fileName);
        if (!f) {   // a problem outside the generated files: report it on every document
            for (const errs of result.values()) errs.push(`types: ${msg}`);
            continue;
        }
        const line = d.file.getLineAndCharacterOfPosition(d.start).line;
        const where = f.paths[line] || '(document)';
        result.get(f.item.doc).push(`types: ${where}: ${msg}`);
    }
    return result;
}

// ------------------------------------------------------------------ rules

const get = (o, ...keys) => keys.reduce((v, k) => (v === null || v === undefined ? undefined : v[k]), o);

// Pod specs in a document: [{ where, spec, labels }].
function podSpecs(obj) {
    switch (obj.kind) {
    case 'Pod': return [{ where: 'spec', spec: obj.spec || {}, labels: get(obj, 'metadata', 'labels') || {} }];
    case 'Deployment': case 'StatefulSet': case 'DaemonSet': case 'ReplicaSet': case 'Job':
        return [{ where: 'spec.template.spec', spec: get(obj, 'spec', 'template', 'spec') || {},
                  labels: get(obj, 'spec', 'template', 'metadata', 'labels') || {} }];
    case 'CronJob':
        return [{ where: 'spec.jobTemplate.spec.template.spec',
                  spec: get(obj, 'spec', 'jobTemplate', 'spec', 'template', 'spec') || {},
                  labels: get(obj, 'spec', 'jobTemplate', 'spec', 'template', 'metadata', 'labels') || {} }];
    default: return [];
    }
}

function jobSpec(obj) {
    if (obj.kind === 'Job') return { where: 'spec', spec: obj.spec || {} };
    if (obj.kind === 'CronJob') return { where: 'spec.jobTemplate.spec', spec: get(obj, 'spec', 'jobTemplate', 'spec') || {} };
    return null;
}

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const labelsMatch = (sel, labels) => Object.entries(sel || {}).every(([k, v]) => labels[k] === v);

// What the API server would reject although the schema accepts it.
function apiServerRules(obj) {
    const e = [];
    const name = get(obj, 'metadata', 'name');
    if (typeof name !== 'string' || !name) e.push('rules: metadata.name is required');
    else if (!DNS1123.test(name) || name.length > 253) e.push(`rules: metadata.name '${name}' is not a DNS-1123 name`);
    else if (obj.kind === 'CronJob' && name.length > 52) e.push(`rules: metadata.name '${name}': a CronJob name has at most 52 characters`);

    if (obj.kind === 'CronJob') {
        const s = get(obj, 'spec', 'schedule');
        if (typeof s === 'string' && !/^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$/.test(s) &&
            s.trim().split(/\s+/).length !== 5)
            e.push(`rules: spec.schedule '${s}' is not a 5-field cron expression`);
        if (typeof s === 'string' && /TZ=/.test(s)) e.push('rules: spec.schedule: use spec.timeZone, not TZ=');
    }
    if (['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet'].includes(obj.kind)) {
        const sel = get(obj, 'spec', 'selector', 'matchLabels');
        const labels = get(obj, 'spec', 'template', 'metadata', 'labels') || {};
        if (sel && !labelsMatch(sel, labels))
            e.push('rules: spec.selector.matchLabels does not match spec.template.metadata.labels');
    }
    for (const { where, spec } of podSpecs(obj)) {
        const containers = [...(spec.initContainers || []), ...(spec.containers || [])];
        const volumes = new Set();
        for (const v of spec.volumes || []) {
            if (volumes.has(v.name)) e.push(`rules: ${where}.volumes: '${v.name}' declared twice`);
            volumes.add(v.name);
        }
        const cnames = new Set();
        for (const c of containers) {
            if (cnames.has(c.name)) e.push(`rules: ${where}: container name '${c.name}' used twice`);
            cnames.add(c.name);
            const portNames = new Set((c.ports || []).map((p) => p.name).filter(Boolean));
            for (const m of c.volumeMounts || [])
                if (!volumes.has(m.name))
                    e.push(`rules: ${where}: container '${c.name}' mounts volume '${m.name}', which is not in volumes`);
            for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
                const port = get(c, probe, 'httpGet', 'port') ?? get(c, probe, 'tcpSocket', 'port');
                if (typeof port === 'string' && !/^\d+$/.test(port) && !portNames.has(port))
                    e.push(`rules: ${where}: container '${c.name}' ${probe} uses port '${port}', which no containerPort names`);
            }
        }
        const js = jobSpec(obj);
        if (js) {
            const rp = spec.restartPolicy;
            if (rp !== 'Never' && rp !== 'OnFailure')
                e.push(`rules: ${where}.restartPolicy must be Never or OnFailure in a Job (is ${rp === undefined ? 'unset' : rp})`);
            const pfp = js.spec.podFailurePolicy;
            if (pfp) {
                if (rp !== 'Never')
                    e.push(`rules: ${js.where}.podFailurePolicy requires ${where}.restartPolicy: Never (is ${rp === undefined ? 'unset' : rp})`);
                (pfp.rules || []).forEach((r, i) => {
                    const at = `${js.where}.podFailurePolicy.rules[${i}]`;
                    if (!!r.onExitCodes === !!r.onPodConditions)
                        e.push(`rules: ${at}: exactly one of onExitCodes and onPodConditions`);
                    const ec = r.onExitCodes;
                    if (ec) {
                        if (ec.containerName !== undefined && !cnames.has(ec.containerName))
                            e.push(`rules: ${at}.onExitCodes.containerName '${ec.containerName}' is not a container`);
                        if (ec.operator === 'In' && (ec.values || []).includes(0))
                            e.push(`rules: ${at}.onExitCodes: exit code 0 cannot be used with operator In`);
                        if (new Set(ec.values || []).size !== (ec.values || []).length)
                            e.push(`rules: ${at}.onExitCodes.values has duplicates`);
                    }
                });
            }
        }
    }
    return e;
}

// This project's policy for every pod that runs the mlpipe image.
function projectPolicy(obj) {
    const e = [];
    for (const { where, spec } of podSpecs(obj)) {
        const psc = spec.securityContext || {};
        const volumes = new Map((spec.volumes || []).map((v) => [v.name, v]));
        if (psc.runAsUser !== IMAGE_UID || psc.runAsGroup !== IMAGE_UID)
            e.push(`rules: ${where}.securityContext: runAsUser and runAsGroup must be ${IMAGE_UID} (the image's user)`);
        for (const c of spec.containers || []) {
            const csc = c.securityContext || {};
            const at = `${where}.containers[${c.name}]`;
            if ((csc.runAsNonRoot ?? psc.runAsNonRoot) !== true) e.push(`rules: ${at}: runAsNonRoot must be true`);
            const sp = get(csc, 'seccompProfile', 'type') || get(psc, 'seccompProfile', 'type');
            if (sp !== 'RuntimeDefault' && sp !== 'Localhost') e.push(`rules: ${at}: seccompProfile must be RuntimeDefault (or Localhost)`);
            if (csc.readOnlyRootFilesystem !== true) e.push(`rules: ${at}.securityContext.readOnlyRootFilesystem must be true`);
            if (csc.allowPrivilegeEscalation !== false) e.push(`rules: ${at}.securityContext.allowPrivilegeEscalation must be false`);
            if (csc.privileged === true) e.push(`rules: ${at}.securityContext.privileged must not be true`);
            if (!(get(csc, 'capabilities', 'drop') || []).includes('ALL')) e.push(`rules: ${at}.securityContext.capabilities.drop must include ALL`);
            if ((get(csc, 'capabilities', 'add') || []).length) e.push(`rules: ${at}.securityContext.capabilities.add must be empty`);
            for (const r of ['requests', 'limits'])
                for (const k of ['cpu', 'memory'])
                    if (get(c, 'resources', r, k) === undefined) e.push(`rules: ${at}.resources.${r}.${k} must be set`);
            const tmp = (c.volumeMounts || []).find((m) => m.mountPath === '/tmp');
            if (!tmp || !get(volumes.get(tmp.name), 'emptyDir'))
                e.push(`rules: ${at}: /tmp must be an emptyDir mount (the root filesystem is read-only)`);
        }
    }
    const js = jobSpec(obj);
    if (js) {
        const s = js.spec;
        if (s.backoffLimit === undefined) e.push(`rules: ${js.where}.backoffLimit must be set`);
        if (s.activeDeadlineSeconds === undefined) e.push(`rules: ${js.where}.activeDeadlineSeconds must be set`);
        const failOn2 = (get(s, 'podFailurePolicy', 'rules') || []).some((r) => r.action === 'FailJob' &&
            get(r, 'onExitCodes', 'operator') === 'In' && (get(r, 'onExitCodes', 'values') || []).includes(2));
        if (!failOn2) e.push(`rules: ${js.where}.podFailurePolicy must FailJob on exit code 2 (mlpipe's config errors never pass on retry)`);
    }
    if (obj.kind === 'CronJob' && get(obj, 'spec', 'concurrencyPolicy') !== 'Forbid')
        e.push('rules: spec.concurrencyPolicy must be Forbid (one training run writes the run database at a time)');
    return e;
}

// References between documents: ConfigMaps, PVCs, Service selectors.
function crossRefs(doc, all) {
    const e = [];
    const have = (kind, name) => all.some((d) => d.obj && d.obj.kind === kind && get(d.obj, 'metadata', 'name') === name);
    const obj = doc.obj;
    for (const { where, spec } of podSpecs(obj)) {
        for (const v of spec.volumes || []) {
            const cm = get(v, 'configMap', 'name');
            if (cm && !get(v, 'configMap', 'optional') && !have('ConfigMap', cm))
                e.push(`rules: ${where}.volumes[${v.name}]: ConfigMap '${cm}' is not defined in the manifests`);
            const pvc = get(v, 'persistentVolumeClaim', 'claimName');
            if (pvc && !have('PersistentVolumeClaim', pvc))
                e.push(`rules: ${where}.volumes[${v.name}]: PersistentVolumeClaim '${pvc}' is not defined in the manifests`);
        }
    }
    if (obj.kind === 'Service' && get(obj, 'spec', 'selector')) {
        const targets = all.flatMap((d) => (d.obj ? podSpecs(d.obj) : []))
            .filter((p) => labelsMatch(obj.spec.selector, p.labels));
        if (targets.length === 0) e.push('rules: spec.selector matches no pod template in the manifests');
        for (const p of obj.spec.ports || []) {
            if (typeof p.targetPort !== 'string') continue;
            const named = targets.some((t) => (t.spec.containers || []).some((c) => (c.ports || []).some((cp) => cp.name === p.targetPort)));
            if (targets.length && !named) e.push(`rules: spec.ports: targetPort '${p.targetPort}' is no containerPort name of the selected pods`);
        }
    }
    return e;
}

// Validates the documents of `files`, with `context` documents available for
// references.  Returns [{ label, errors }] (one per document, or per file when
// the file itself does not parse).
function validateFiles(files, contextDocs = []) {
    const reports = [];
    const docs = [];
    for (const f of files) {
        const { docs: ds, errors } = loadFile(f);
        if (errors.length) reports.push({ label: rel(f), errors });
        docs.push(...ds);
    }
    const items = [];
    const perDoc = new Map();
    for (const d of docs) {
        const { errs, mod } = checkApi(d.obj);
        perDoc.set(d, errs);
        if (errs.length) continue;
        errs.push(...checkSchema(d.obj));
        items.push({ doc: d, mod });
    }
    const typeErrs = checkTypes(items);
    const all = [...docs, ...contextDocs.filter((c) => !docs.some((d) => d.file === c.file))];
    for (const d of docs) {
        const errs = perDoc.get(d);
        errs.push(...(typeErrs.get(d) || []));
        if (typeof d.obj === 'object' && d.obj && !Array.isArray(d.obj)) {
            errs.push(...apiServerRules(d.obj), ...projectPolicy(d.obj), ...crossRefs(d, all));
        }
        reports.push({ label: docName(d), errors: errs });
    }
    return { reports, docs };
}

// ------------------------------------------------------------------ Dockerfile

function lintDockerfile(file) {
    const errs = [];
    const text = fs.readFileSync(file, 'utf8');
    // Global ARG defaults (before the first FROM) expand FROM lines, so the
    // linter sees the real default base image and its tag.
    const args = {};
    const lines = text.split('\n');
    for (const l of lines) {
        if (/^\s*FROM\s/i.test(l)) break;
        const m = l.match(/^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)/i);
        if (m) args[m[1]] = m[2].replace(/^["']|["']$/g, '');
    }
    const expanded = lines.map((l) => (/^\s*FROM\s/i.test(l)
        ? l.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (all, v) => (v in args ? args[v] : all))
        : l)).join('\n');
    // dockerfilelint reads an optional .dockerfilelintrc from the given
    // directory; tests/k8s has none, so every rule is on.
    const exLines = expanded.split('\n');
    let issues;
    try {
        issues = require('dockerfilelint').run(HERE, expanded);
    } catch (e) {
        return [`lint: dockerfilelint failed: ${e.message}`];
    }
    for (const i of issues)
        errs.push(`lint: line ${i.line}: ${i.title} (${i.category}): ${(exLines[i.line - 1] || '').trim()}`);

    // The project's rules for its image (the issue "Container-native").
    const stages = expanded.split(/^\s*FROM\s/im).length - 1;
    const finalStage = expanded.slice(expanded.search(/^\s*FROM\s(?![\s\S]*^\s*FROM\s)/im));
    if (stages < 2) errs.push('image: the Dockerfile must be multi-stage (build, then runtime)');
    if (!/^ARG\s+BASE=debian:bookworm/m.test(text)) errs.push('image: ARG BASE=debian:bookworm-... must come before the first FROM');
    if (!/^\s*FROM\s+\$\{BASE\}/im.test(text)) errs.push('image: the stages must be FROM ${BASE}');
    if (!/^ARG\s+RUN_TESTS=1\s*$/m.test(text) || !/make test/.test(text))
        errs.push('image: the build stage must run `make test` by default (ARG RUN_TESTS=1)');
    for (const m of text.matchAll(/apt-get\s+install[^\n]*(?:\\\n[^\n]*)*/g))
        if (!/--no-install-recommends/.test(m[0])) errs.push(`image: apt-get install without --no-install-recommends: ${m[0].split('\n')[0].trim()}`);
    const user = (finalStage.match(/^\s*USER\s+(\S+)/gim) || []).pop();
    if (!user || !/USER\s+[1-9]\d*(:[1-9]\d*)?\s*$/i.test(user))
        errs.push('image: the runtime stage must end as a numeric non-root USER (uid:gid), so runAsNonRoot can check it');
    if (!/^\s*ENTRYPOINT\s+\[\s*"mlpipe"\s*\]/m.test(finalStage)) errs.push('image: ENTRYPOINT ["mlpipe"] (exec form) is missing');
    for (const l of ['title', 'description', 'version', 'source', 'licenses'])
        if (!finalStage.includes(`org.opencontainers.image.${l}=`)) errs.push(`image: label org.opencontainers.image.${l} is missing`);
    return errs;
}

// ------------------------------------------------------------------ main

function listFiles(dir, re) {
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => path.join(dir, f));
}

function expectation(file) {
    const m = fs.readFileSync(file, 'utf8').match(/^#\s*expect:\s*(.+?)\s*$/m);
    return m ? m[1] : null;
}

function printReport(label, errors, okWord = 'ok  ') {
    if (errors.length === 0) { console.log(`${okWord} ${label}`); return; }
    console.log(`FAIL ${label}`);
    for (const e of errors) console.log(`       - ${e}`);
}

function main(argv) {
    let passed = 0, failed = 0;
    const tally = (ok) => { if (ok) passed++; else failed++; };
    const examples = listFiles(EXAMPLES, /\.ya?ml$/);
    const exampleDocs = examples.length ? validateFiles(examples).docs : [];

    if (argv.length) {   // validate the given files only
        for (const r of validateFiles(argv.map((f) => path.resolve(f)), exampleDocs).reports) {
            printReport(r.label, r.errors);
            tally(r.errors.length === 0);
        }
        console.log(`k8s: ${passed} passed, ${failed} failed`);
        return failed ? 1 : 0;
    }

    console.log(`== manifests in ${rel(EXAMPLES)}/ (Kubernetes ${K8S_VERSION} types and schemas)`);
    if (examples.length === 0) { console.log(`FAIL no manifests in ${rel(EXAMPLES)}/`); tally(false); }
    const { reports, docs } = validateFiles(examples);
    for (const r of reports) { printReport(r.label, r.errors); tally(r.errors.length === 0); }
    const kinds = new Set(docs.map((d) => d.obj && d.obj.kind));
    const missing = ['ConfigMap', 'PersistentVolumeClaim', 'CronJob', 'Deployment', 'Service'].filter((k) => !kinds.has(k));
    printReport('the set has a ConfigMap, PersistentVolumeClaim, CronJob, Deployment and Service',
                missing.map((k) => `no ${k} document`));
    tally(missing.length === 0);

    console.log('== Dockerfile');
    if (!fs.existsSync(DOCKERFILE)) { printReport(rel(DOCKERFILE), ['missing']); tally(false); }
    else { const e = lintDockerfile(DOCKERFILE); printReport(`${rel(DOCKERFILE)} (dockerfilelint + image rules)`, e); tally(e.length === 0); }

    console.log(`== broken inputs in ${rel(BROKEN)}/ must each be rejected, for the reason in their '# expect:' line`);
    const broken = listFiles(BROKEN, /\.(ya?ml|Dockerfile)$/);
    if (broken.length === 0) { console.log('FAIL no broken inputs'); tally(false); }
    for (const f of broken) {
        const want = expectation(f);
        let errors;
        if (f.endsWith('Dockerfile')) errors = lintDockerfile(f);
        else errors = validateFiles([f], docs).reports.flatMap((r) => r.errors);
        const hit = want && errors.find((e) => e.includes(want));
        if (!want) { console.log(`FAIL ${rel(f)}: has no '# expect: TEXT' line`); tally(false); }
        else if (errors.length === 0) { console.log(`FAIL ${rel(f)}: was ACCEPTED (expected a failure mentioning '${want}')`); tally(false); }
        else if (!hit) {
            console.log(`FAIL ${rel(f)}: rejected, but not for '${want}':`);
            for (const e of errors) console.log(`       - ${e}`);
            tally(false);
        } else { console.log(`ok   ${rel(f)} rejected: ${hit}`); tally(true); }
    }
    console.log(`k8s: ${passed} passed, ${failed} failed`);
    return failed ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
