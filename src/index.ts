/** wgsl-vlm's library API. */
export { loadModel, VisionLanguageModel } from "./generate/model.js";
export { DEFAULT_MAX_NEW_TOKENS } from "./generate/request.js";
export type { GenerateRequest, GenerateChunk, GenerateResult, FinishReason } from "./generate/request.js";
export type { ChatMessage, ImageInput } from "./generate/chat_template.js";
export type { LoadModelOptions, LoadReport } from "./models/llava.js";
export { verifyFolder, type VerifyReport, type Comparison } from "./tools/verify.js";
export { Gpu, type GpuOptions } from "./tensor/gpu.js";
export { Tensor } from "./tensor/tensor.js";
export type { DType } from "./tensor/dtype.js";
export { ShapeError, GpuError, DeviceLostError, NoAdapterError } from "./tensor/errors.js";
export { loadTokenizer, Tokenizer } from "./tokenizer/index.js";
export { loadPreprocessorConfig } from "./image/config.js";
export { preprocessImage } from "./image/preprocess.js";
export { loadConfig } from "./weights/config.js";
export { Checkpoint } from "./weights/checkpoint.js";
