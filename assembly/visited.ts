// Visited set as 16-bit epoch tags, one per slot: a new search bumps the epoch
// instead of clearing the set.

@inline export function visited(base: usize, slot: u32, tag: u16): bool {
  return load<u16>(base + (<usize>slot << 1)) == tag;
}

@inline export function visit(base: usize, slot: u32, tag: u16): void {
  store<u16>(base + (<usize>slot << 1), tag);
}
