// Test helper for nft scripts in the command form weft writes (`add chain ip T NAME`, `add rule
// ip T CHAIN ...`): every jump, goto, vmap target and @set reference must name something defined.
export function nftDanglingReferences(script: string): string[] {
  const chains = new Set<string>();
  const sets = new Set<string>();
  const uses: { line: string; kind: 'chain' | 'set'; name: string }[] = [];
  for (const line of script.split('\n')) {
    const def = /^add (chain|set|map) ip \S+ (\S+)/.exec(line);
    if (def) (def[1] === 'chain' ? chains : sets).add(def[2]);
    const body = /^add (?:rule|element) ip \S+ \S+ (.*)$/.exec(line)?.[1];
    if (!body) continue;
    if (line.startsWith('add rule')) uses.push({ line, kind: 'chain', name: line.split(' ')[4] });
    for (const m of body.matchAll(/\b(?:jump|goto) ([^\s,}]+)/g)) uses.push({ line, kind: 'chain', name: m[1] });
    for (const m of body.matchAll(/@([^\s,}]+)/g)) uses.push({ line, kind: 'set', name: m[1] });
  }
  return uses.filter((u) => !(u.kind === 'chain' ? chains : sets).has(u.name)).map((u) => `undefined ${u.kind} ${u.name}: ${u.line}`);
}
