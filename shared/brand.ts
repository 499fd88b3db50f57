/**
 * berth's own classes carry a brand: a registered symbol (`Symbol.for`) on their prototype. A value made by
 * another copy of the berth package (a flow bundled with a berth of its own, a global CLI beside a
 * project's install) still carries it, so berth recognises it for what it is. `instanceof` answers another
 * question, whether the value comes from *this* copy, and is kept for where module state matters (the
 * default runner a flow-run container swaps in lives in one copy only). BerthError carries the same kind of
 * brand, "berth.BerthError", set in wire/errors.ts.
 */
export type BrandName = "Flow" | "Task" | "Environment" | "Storage" | "DockerStorage";

const symbols = new Map<BrandName, symbol>();

function symbolOf(name: BrandName): symbol {
  let symbol = symbols.get(name);
  if (!symbol) symbols.set(name, (symbol = Symbol.for(`berth.${name}`)));
  return symbol;
}

/** Marks every instance of `cls` (and of its subclasses) with the brand `name`. */
export function brand(cls: { prototype: object }, name: BrandName): void {
  Object.defineProperty(cls.prototype, symbolOf(name), { value: true, enumerable: false });
}

/** Whether `value` is an instance of berth's class `name`, from any copy of berth. */
export function hasBrand(value: unknown, name: BrandName): boolean {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  return (value as Record<symbol, unknown>)[symbolOf(name)] === true;
}
