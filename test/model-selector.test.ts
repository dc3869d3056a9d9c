import { describe, expect, it } from 'vitest';
import { matchesSelector, matchesServiceSelector } from '../mesh-control/model/selector.ts';

const web = { app: 'web', tier: 'front' };

describe('matchesSelector', () => {
  it('an empty selector matches everything, also pods without labels', () => {
    expect(matchesSelector({}, web)).toBe(true);
    expect(matchesSelector({}, undefined)).toBe(true);
    expect(matchesSelector({ matchLabels: {}, matchExpressions: [] }, {})).toBe(true);
  });
  it('matchLabels entries are ANDed', () => {
    expect(matchesSelector({ matchLabels: { app: 'web' } }, web)).toBe(true);
    expect(matchesSelector({ matchLabels: { app: 'web', tier: 'front' } }, web)).toBe(true);
    expect(matchesSelector({ matchLabels: { app: 'web', tier: 'back' } }, web)).toBe(false);
    expect(matchesSelector({ matchLabels: { env: '' } }, web)).toBe(false);
    expect(matchesSelector({ matchLabels: { env: '' } }, { env: '' })).toBe(true);
    expect(matchesSelector({ matchLabels: { app: 'web' } }, undefined)).toBe(false);
  });
  it('In needs the key with a listed value', () => {
    expect(matchesSelector({ matchExpressions: [{ key: 'app', operator: 'In', values: ['api', 'web'] }] }, web)).toBe(true);
    expect(matchesSelector({ matchExpressions: [{ key: 'app', operator: 'In', values: ['api'] }] }, web)).toBe(false);
    expect(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'In', values: ['prod'] }] }, web)).toBe(false);
  });
  it('NotIn matches an absent key or an unlisted value', () => {
    expect(matchesSelector({ matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['web'] }] }, web)).toBe(false);
    expect(matchesSelector({ matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['api'] }] }, web)).toBe(true);
    expect(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['prod'] }] }, web)).toBe(true);
  });
  it('Exists and DoesNotExist test only the key', () => {
    expect(matchesSelector({ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, web)).toBe(true);
    expect(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'Exists' }] }, web)).toBe(false);
    expect(matchesSelector({ matchExpressions: [{ key: 'env', operator: 'DoesNotExist' }] }, web)).toBe(true);
    expect(matchesSelector({ matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, web)).toBe(false);
  });
  it('matchLabels and matchExpressions are ANDed', () => {
    const sel = { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In' as const, values: ['front'] }, { key: 'env', operator: 'DoesNotExist' as const }] };
    expect(matchesSelector(sel, web)).toBe(true);
    expect(matchesSelector(sel, { ...web, env: 'prod' })).toBe(false);
    expect(matchesSelector(sel, { ...web, app: 'api' })).toBe(false);
  });
  it('does not match inherited object properties', () => {
    expect(matchesSelector({ matchExpressions: [{ key: 'toString', operator: 'Exists' }] }, web)).toBe(false);
  });
});

describe('matchesServiceSelector', () => {
  it('requires every entry to match', () => {
    expect(matchesServiceSelector({ app: 'web' }, web)).toBe(true);
    expect(matchesServiceSelector({ app: 'web', tier: 'back' }, web)).toBe(false);
    expect(matchesServiceSelector({ app: 'web' }, undefined)).toBe(false);
  });
  it('an absent or empty selector selects no pods', () => {
    expect(matchesServiceSelector(undefined, web)).toBe(false);
    expect(matchesServiceSelector({}, web)).toBe(false);
  });
});
