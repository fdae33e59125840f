/**
 * Named registries: every implementation of an extension point has a unique `name`; lookups of
 * unknown names fail with the list of known ones.
 */
import type { DependencyContainer, InjectionToken } from 'tsyringe';
import { RegistryError } from '../errors';
import type { Named } from './tokens';

export class NamedRegistry<T extends Named> {
  private readonly items = new Map<string, T>();

  /** @param kind human-readable kind for messages, e.g. "expansion strategy". */
  constructor(
    readonly kind: string,
    items: Iterable<T> = [],
  ) {
    for (const it of items) this.add(it);
  }

  add(item: T): this {
    if (typeof item?.name !== 'string' || item.name.length === 0) throw new RegistryError(`a ${this.kind} has no name`, 'REGISTRY_NO_NAME');
    if (this.items.has(item.name)) {
      throw new RegistryError(`duplicate ${this.kind} "${item.name}": two plugins register the same name; remove or rename one`, 'REGISTRY_DUPLICATE');
    }
    this.items.set(item.name, item);
    return this;
  }

  has(name: string): boolean {
    return this.items.has(name);
  }

  get(name: string): T {
    const it = this.items.get(name);
    if (!it) {
      const known = this.names();
      throw new RegistryError(`unknown ${this.kind} "${name}"; known: ${known.length ? known.join(', ') : '(none registered)'}`, 'REGISTRY_UNKNOWN');
    }
    return it;
  }

  names(): string[] {
    return [...this.items.keys()].sort();
  }

  list(): T[] {
    return this.names().map((n) => this.items.get(n)!);
  }
}

/** Collects every registration of `token` in `container` into a registry (empty when none). */
export function resolveRegistry<T extends Named>(container: DependencyContainer, token: InjectionToken<T>, kind: string): NamedRegistry<T> {
  const items = container.isRegistered(token, true) ? container.resolveAll<T>(token) : [];
  return new NamedRegistry<T>(kind, items);
}
