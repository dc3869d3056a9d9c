// The API server's name formats (k8s.io/apimachinery/pkg/util/validation). Each check returns a
// message for an invalid value, or undefined when the value is valid.

const LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_LABEL = new RegExp(`^${LABEL}$`);
const DNS1123_SUBDOMAIN = new RegExp(`^${LABEL}(\\.${LABEL})*$`);
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

const got = (value: string): string => `, got ${JSON.stringify(value)}`;

/** Namespace, container, LabHost names; hostnames. */
export function checkDNS1123Label(value: string): string | undefined {
  if (value.length <= 63 && DNS1123_LABEL.test(value)) return undefined;
  return `must be a lowercase RFC 1123 label (at most 63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit)${got(value)}`;
}

/** Pod, Node, Deployment, EndpointSlice, NetworkPolicy names. */
export function checkDNS1123Subdomain(value: string): string | undefined {
  if (value.length <= 253 && DNS1123_SUBDOMAIN.test(value)) return undefined;
  return `must be a lowercase RFC 1123 subdomain (at most 253 characters: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)${got(value)}`;
}

/** Service names: they become DNS labels, so they must start with a letter. */
export function checkDNS1035Label(value: string): string | undefined {
  if (value.length <= 63 && DNS1035_LABEL.test(value)) return undefined;
  return `must be an RFC 1035 label (at most 63 characters: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit)${got(value)}`;
}

/** Label and annotation keys: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters. */
export function checkQualifiedName(value: string): string | undefined {
  const slash = value.indexOf('/');
  const prefix = slash === -1 ? undefined : value.slice(0, slash);
  const name = slash === -1 ? value : value.slice(slash + 1);
  if (prefix !== undefined && (prefix === '' || checkDNS1123Subdomain(prefix) !== undefined)) {
    return `must have a prefix that is a lowercase RFC 1123 subdomain before '/'${got(value)}`;
  }
  if (name.length > 63 || !QUALIFIED_NAME_PART.test(name)) {
    return `must be a qualified name (an optional DNS prefix and '/', then at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit)${got(value)}`;
  }
  return undefined;
}

export function checkLabelValue(value: string): string | undefined {
  if (value === '' || (value.length <= 63 && QUALIFIED_NAME_PART.test(value))) return undefined;
  return `must be empty or at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit${got(value)}`;
}

/** IANA_SVC_NAME (RFC 6335): container port names, and named targetPorts that refer to them. */
export function checkPortName(value: string): string | undefined {
  const valid = value.length >= 1 && value.length <= 15 && /^[-a-z0-9]+$/.test(value) && /[a-z]/.test(value)
    && !value.startsWith('-') && !value.endsWith('-') && !value.includes('--');
  if (valid) return undefined;
  return `must be an IANA service name (at most 15 characters: lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-')${got(value)}`;
}
