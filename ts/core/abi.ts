// The exports of build/vdb.wasm as TypeScript sees them: numbers in, numbers
// out (docs/wasm-abi.md). Any host, with or without the loader, can use it.

export interface CoreExports {
  memory: WebAssembly.Memory;
  scratch_ptr(): number;
  index_init(dim: number, metric: number, m: number, efc: number, seedLo: number, seedHi: number, cap: number): number;
  index_init_sq8(dim: number, metric: number, m: number, efc: number, seedLo: number, seedHi: number, cap: number): number;
  index_quantization(): number;
  index_sq8_params_ptr(): number;
  index_train_ptr(n: number): number;
  index_train(n: number): number;
  index_reserve(cap: number): number;
  index_input_ptr(): number;
  index_result_ids_ptr(): number;
  index_result_dist_ptr(): number;
  index_filter_ptr(): number;
  index_size(): number;
  index_slots(): number;
  index_capacity(): number;
  index_pending(): number;
  index_dim(): number;
  index_metric(): number;
  index_max_level(): number;
  index_upper_bytes(): number;
  index_layout_bytes(): number;
  index_layout_bytes_for(cap: number): number;
  index_add(): number;
  index_remove(slot: number): number;
  index_slot_state(slot: number): number;
  index_vector_ptr(slot: number): number;
  index_consolidate(): number;
  index_search(k: number, ef: number, filterMode: number): number;
  index_search_exact(k: number, filtered: number): number;
  index_save_begin(): number;
  index_section_count(): number;
  index_section_ptr(i: number): number;
  index_section_len(i: number): number;
  index_load_begin(): number;
  index_load_end(): number;
  kernel_l2sq(a: number, b: number, n: number): number;
  kernel_l2sq_scalar(a: number, b: number, n: number): number;
  kernel_dot(a: number, b: number, n: number): number;
  kernel_dot_scalar(a: number, b: number, n: number): number;
  kernel_bench(kind: number, a: number, b: number, n: number, iters: number): number;
  kernel_row_distances(metric: number, q: number, base: number, strideBytes: number, n: number, ids: number, count: number, out: number): number;
}
