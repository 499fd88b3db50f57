/**
 * A flow's slug: the file-system and image-name friendly form of its name. The server stores it with each
 * flow and storage uses it for `/opt/berth/flows/<slug>.mjs`, so both must compute it here.
 */
export function slugify(name: string): string {
  const slug = name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return slug === "" ? "flow" : slug;
}
