/**
 * sdnode: local Stable Diffusion for Node.js. This file is the only list of public exports.
 * @packageDocumentation
 */
export { loadModel, Model } from './model';
export type { ModelInfo, GenerationPhase, ProgressEvent, PreviewEvent, GenerateCallOptions, GenerationResult } from './model';
export { GeneratedImage, formatInfotext } from './image';
export type { ImageParameters, ImageModelInfo, PngOptions, JpegOptions, WebpOptions } from './image';
export { convert, inspect } from './convert';
export type { ConvertOptions, ConvertProgressEvent, ConvertResult } from './convert';
export { getSystemInfo } from './system';
export { downloadTokenizer, tokenizerCachePath, CLIP_MERGES_URLS, CLIP_MERGES_SHA256 } from './tokenizer';
export type { DownloadTokenizerOptions, DownloadTokenizerResult } from './tokenizer';
export type { SystemInfo, DeviceInfo } from './system';
export type { LoraOption, ControlNetOption, ResolvedControlNet } from './adapters';
export {
  SAMPLERS,
  SCHEDULERS,
  PREDICTIONS,
  RNGS,
  WEIGHT_TYPES,
  DECODERS,
  PREVIEW_METHODS,
  DEFAULT_STRENGTH,
  GENERATE_DEFAULTS,
  MIN_SIZE,
  MAX_SIZE,
  resolveGenerateOptions,
} from './options';
export type {
  GenerateOptions,
  Prediction,
  ResolvedGenerateOptions,
  LoadOptions,
  DeviceSpec,
  LoadProgressEvent,
  ModelParts,
  ModelSource,
  Sampler,
  Scheduler,
  Rng,
  WeightType,
  Decoder,
  PreviewMethod,
  ImageInput,
  RawImageInput,
} from './options';
export {
  SdnodeError,
  ModelLoadError,
  InvalidOptionError,
  AbortError,
  DisposedError,
  InsufficientMemoryError,
  UnsupportedError,
  NativeBindingError,
} from './errors';
export type { SdnodeErrorCode } from './errors';
