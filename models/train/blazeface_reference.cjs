// Runs BlazeFace in TensorFlow.js itself (its pure-JavaScript CPU backend), so that blazeface.py can
// compare its PyTorch port with the graph's own arithmetic:
//
//   node blazeface_reference.cjs TFJS_PREFIX MODEL_DIR INPUT.f32 SIDE OUT_PREFIX NODE...
//
// TFJS_PREFIX holds node_modules/@tensorflow/tfjs (npm install --prefix TFJS_PREFIX @tensorflow/tfjs@4);
// INPUT.f32 is a 1 x SIDE x SIDE x 3 float32 picture (NHWC); each NODE's output is written to
// OUT_PREFIX.<i>.f32 (NHWC float32). blazeface.py --tfjs runs this; see its docstring.
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const [prefix, modelDir, inputPath, sideArg, outPrefix, ...nodes] = process.argv.slice(2);
  if (!nodes.length) throw new Error("usage: TFJS_PREFIX MODEL_DIR INPUT.f32 SIDE OUT_PREFIX NODE...");
  const tf = require(path.join(path.resolve(prefix), "node_modules", "@tensorflow", "tfjs"));
  await tf.setBackend("cpu");
  const graph = JSON.parse(fs.readFileSync(path.join(modelDir, "blazeface.json"), "utf8"));
  const manifest = graph.weightsManifest[0];
  const bin = Buffer.concat(manifest.paths.map((p) => fs.readFileSync(path.join(modelDir, p))));
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: graph.modelTopology,
    weightSpecs: manifest.weights,
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
  }));
  const side = Number(sideArg);
  const raw = fs.readFileSync(inputPath);
  const input = tf.tensor4d(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), [1, side, side, 3]);
  const outs = model.execute(input, nodes);
  (Array.isArray(outs) ? outs : [outs]).forEach((t, i) => {
    fs.writeFileSync(`${outPrefix}.${i}.f32`, Buffer.from(t.dataSync().buffer));
    console.log(`${nodes[i]} ${JSON.stringify(t.shape)}`);
  });
}

main().catch((e) => {
  console.error(`blazeface_reference: ${e.message}`);
  process.exit(1);
});
