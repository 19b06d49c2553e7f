// The browser entry must not reach a Node built-in through any static import.
import { expect } from 'chai';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

function staticImports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  return [...src.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm), ...src.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]);
}

function reachable(entry: string): { files: Set<string>; bare: Set<string> } {
  const files = new Set<string>();
  const bare = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const spec of staticImports(file)) {
      if (!spec.startsWith('.')) { bare.add(spec); continue; }
      const ts = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      visit(existsSync(ts) ? ts : resolve(dirname(file), spec));
    }
  };
  visit(resolve(entry));
  return { files, bare };
}

describe('lib/web.ts (browser entry)', () => {
  it('reaches no Node built-in and no onnxruntime-node', () => {
    const { files, bare } = reachable('lib/web.ts');
    expect(files.size).to.be.greaterThan(10);
    const node = [...bare].filter((b) => b.startsWith('node:') || ['fs', 'path', 'os', 'zlib', 'url', 'module', 'onnxruntime-node'].includes(b));
    expect(node, `Node-only imports reachable from lib/web.ts: ${node.join(', ')}`).to.deep.equal([]);
  });

  it('the Node entry does reach them (the check can fail)', () => {
    const { bare } = reachable('lib/index.ts');
    expect([...bare].some((b) => b.startsWith('node:'))).to.equal(true);
  });
});
