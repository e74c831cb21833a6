/**
 * INTERNAL test support, not exported from index.ts: a Model backed by the addon's fake engine
 * (native/addon/fake_model.cpp), which sleeps instead of computing, so that queueing, cancellation, progress,
 * previews, disposal and event-loop responsiveness can be tested without weights.
 * @internal
 * @packageDocumentation
 */
import type { NativeFakeOptions } from './binding';
import { openModel, type Model } from './model';
import { resolveLoadOptions, type LoadOptions } from './options';

/** Timings (ms) of the fake engine and the scratch memory it allocates per run. */
export type FakeModelOptions = NativeFakeOptions;

/** Loads a fake model. */
export function loadFakeModel(fake: FakeModelOptions = {}, options?: Pick<LoadOptions, 'onProgress' | 'signal'>): Promise<Model> {
  const opts = resolveLoadOptions(options);
  return openModel('fake-model', opts, (native, onProgress, handle) => native.loadFake(fake, onProgress, handle));
}
