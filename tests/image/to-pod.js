#!/usr/bin/env node
// Turns a workload from examples/k8s/ into a bare Pod that `podman kube play`
// can run (podman 4.3 plays Pods and Deployments, not CronJobs or Jobs).
//
//   node tests/image/to-pod.js WORKLOAD.yaml KIND IMAGE POD_NAME [CLAIM=VOLUME]...
//                              [--with FILE.yaml]... [--host-network]
//
// The Pod's spec is the workload's pod template spec, unchanged but for the
// container image (set to IMAGE, imagePullPolicy Never) and the
// persistentVolumeClaim names mapped by CLAIM=VOLUME (podman backs a claim
// with a named volume).  The documents of each --with file (e.g. the
// ConfigMap) come first in the output.  Writes multi-document YAML to stdout.
'use strict';

const fs = require('fs');
const path = require('path');
const yaml = require(path.join(__dirname, '../k8s/node_modules/js-yaml'));

function die(msg) {
    process.stderr.write(`to-pod: ${msg}\n`);
    process.exit(2);
}

const args = process.argv.slice(2);
const withFiles = [];
const claims = {};
let hostNetwork = false;
const pos = [];
for (let i = 0; i < args.length; i++) {
    if (args[i] === '--with') withFiles.push(args[++i]);
    else if (args[i] === '--host-network') hostNetwork = true;
    else if (pos.length >= 4 && args[i].includes('=')) {
        const [k, v] = args[i].split('=');
        claims[k] = v;
    } else pos.push(args[i]);
}
if (pos.length !== 4) die('usage: to-pod.js WORKLOAD.yaml KIND IMAGE POD_NAME [CLAIM=VOLUME]... [--with FILE]...');
const [file, kind, image, podName] = pos;

const docs = yaml.loadAll(fs.readFileSync(file, 'utf8')).filter(Boolean);
const w = docs.find((d) => d.kind === kind);
if (!w) die(`no ${kind} in ${file}`);
const template = kind === 'CronJob' ? w.spec.jobTemplate.spec.template
    : kind === 'Pod' ? { metadata: w.metadata, spec: w.spec } : w.spec.template;
if (!template || !template.spec) die(`${kind} ${w.metadata.name} has no pod template`);

const spec = JSON.parse(JSON.stringify(template.spec));
for (const c of [...(spec.initContainers || []), ...(spec.containers || [])]) {
    c.image = image;
    c.imagePullPolicy = 'Never';
}
// --host-network: podman maps no ports there, so the containers' ports are
// dropped and probes that name a port get its number.
if (hostNetwork) {
    spec.hostNetwork = true;
    for (const c of spec.containers || []) {
        const byName = {};
        for (const p of c.ports || []) if (p.name) byName[p.name] = p.containerPort;
        for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
            const h = c[probe] && (c[probe].httpGet || c[probe].tcpSocket);
            if (h && typeof h.port === 'string' && byName[h.port] !== undefined) h.port = byName[h.port];
        }
        delete c.ports;
    }
}
for (const v of spec.volumes || []) {
    const pvc = v.persistentVolumeClaim;
    if (pvc && claims[pvc.claimName]) pvc.claimName = claims[pvc.claimName];
}
const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: podName, labels: (template.metadata && template.metadata.labels) || {} },
    spec,
};

const out = [];
for (const f of withFiles)
    for (const d of yaml.loadAll(fs.readFileSync(f, 'utf8')).filter(Boolean)) out.push(d);
out.push(pod);
process.stdout.write(out.map((d) => yaml.dump(d, { lineWidth: -1 })).join('---\n'));
