/** spatialthinker: the library API. */
export * from './rewards/index.js';
export * from './match/index.js';
export { native, type RuntimeInfo, type Device, type CudaDeviceInfo } from './native/binding.js';
