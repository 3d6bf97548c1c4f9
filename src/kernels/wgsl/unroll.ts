/** 0 .. n-1: a kernel that writes a loop out in full in WGSL maps over it. */
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);
