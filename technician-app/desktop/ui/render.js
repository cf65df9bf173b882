// Draws decoded VideoFrames on the view's canvas.
//
// With WebGL: frames in I420 (what software decoders give, as WebKitGTK's does) are copied out as
// their three planes and converted to RGB by a shader (BT.601, limited range, as the streamer encodes),
// which is several times cheaper than the browser's own conversion on a machine without a GPU; other
// frames (GPU-backed ones on WebView2 and WKWebView) are handed to WebGL as they are. Without WebGL,
// a 2D canvas draws them. `draw(frame, probe)` closes the frame and resolves, once it is drawn, with
// the colour at `probe` ({x, y} in canvas pixels) when asked.
'use strict';

window.makeRenderer = (canvas, stats) => {
  const gl = canvas.getContext('webgl', { alpha: false, antialias: false, depth: false, stencil: false });
  return gl ? glRenderer(canvas, gl, stats) : canvasRenderer(canvas);
};

function canvasRenderer(canvas) {
  const ctx = canvas.getContext('2d', { alpha: false });
  return {
    kind: '2d',
    async draw(frame, probe) {
      ctx.drawImage(frame, 0, 0, canvas.width, canvas.height);
      frame.close();
      return probe ? Array.from(ctx.getImageData(probe.x, probe.y, 1, 1).data.subarray(0, 3)) : null;
    },
  };
}

const VERTEX = `
attribute vec2 p;
varying vec2 t;
void main() { t = vec2((p.x + 1.0) / 2.0, (1.0 - p.y) / 2.0); gl_Position = vec4(p, 0.0, 1.0); }`;

const YUV = `
precision mediump float;
varying vec2 t;
uniform sampler2D ty, tu, tv;
void main() {
  float y = 1.1644 * (texture2D(ty, t).r - 0.0627);
  float u = texture2D(tu, t).r - 0.502;
  float v = texture2D(tv, t).r - 0.502;
  gl_FragColor = vec4(y + 1.596 * v, y - 0.3918 * u - 0.813 * v, y + 2.0172 * u, 1.0);
}`;

const RGB = `
precision mediump float;
varying vec2 t;
uniform sampler2D ty;
void main() { gl_FragColor = vec4(texture2D(ty, t).rgb, 1.0); }`;

// `stats` gets the milliseconds spent copying planes out, uploading them, and drawing.
function glRenderer(canvas, gl, stats) {
  Object.assign(stats, { copyMs: 0, uploadMs: 0, glMs: 0 });
  const program = (fragment) => {
    const p = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, VERTEX], [gl.FRAGMENT_SHADER, fragment]]) {
      const s = gl.createShader(type);
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      gl.attachShader(p, s);
    }
    gl.bindAttribLocation(p, 0, 'p');
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
    return p;
  };
  const yuv = program(YUV);
  const rgb = program(RGB);
  gl.useProgram(yuv);
  ['ty', 'tu', 'tv'].forEach((name, i) => gl.uniform1i(gl.getUniformLocation(yuv, name), i));
  gl.useProgram(rgb);
  gl.uniform1i(gl.getUniformLocation(rgb, 'ty'), 0);

  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  gl.enableVertexAttribArray(0);
  gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
  gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);

  const textures = [0, 1, 2].map(() => {
    const t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, t);
    for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
      [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) {
      gl.texParameteri(gl.TEXTURE_2D, k, v);
    }
    return t;
  });
  const sizes = [null, null, null];
  const plane = (i, w, h, data) => {
    gl.activeTexture(gl.TEXTURE0 + i);
    gl.bindTexture(gl.TEXTURE_2D, textures[i]);
    // Storage is allocated once per size; later frames only replace the pixels.
    if (!sizes[i] || sizes[i][0] !== w || sizes[i][1] !== h) {
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.LUMINANCE, w, h, 0, gl.LUMINANCE, gl.UNSIGNED_BYTE, data);
      sizes[i] = [w, h];
    } else {
      gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, w, h, gl.LUMINANCE, gl.UNSIGNED_BYTE, data);
    }
  };
  const finish = (probe) => {
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    if (!probe) return null;
    const px = new Uint8Array(4);
    gl.readPixels(probe.x, canvas.height - 1 - probe.y, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    return Array.from(px.subarray(0, 3));
  };
  let buffer = new Uint8Array(0);
  let planesWork = true;

  return {
    kind: 'webgl',
    async draw(frame, probe) {
      try {
        if (planesWork && frame.format === 'I420') {
          const w = frame.visibleRect.width;
          const h = frame.visibleRect.height;
          const cw = Math.ceil(w / 2);
          const ch = Math.ceil(h / 2);
          const size = w * h + 2 * cw * ch;
          if (buffer.length !== size) buffer = new Uint8Array(size);
          const layout = [
            { offset: 0, stride: w },
            { offset: w * h, stride: cw },
            { offset: w * h + cw * ch, stride: cw },
          ];
          try {
            const c0 = performance.now();
            await frame.copyTo(buffer, { layout });
            stats.copyMs += performance.now() - c0;
          } catch (e) {
            // This webview cannot copy planes out: hand frames to WebGL whole from now on.
            console.warn('copyTo', e);
            planesWork = false;
            return this.draw(frame, probe);
          }
          const g0 = performance.now();
          gl.useProgram(yuv);
          plane(0, w, h, buffer.subarray(0, w * h));
          plane(1, cw, ch, buffer.subarray(w * h, w * h + cw * ch));
          plane(2, cw, ch, buffer.subarray(w * h + cw * ch));
          const g1 = performance.now();
          const r = finish(probe);
          stats.uploadMs += g1 - g0;
          stats.glMs += performance.now() - g1;
          return r;
        }
        gl.useProgram(rgb);
        gl.activeTexture(gl.TEXTURE0);
        gl.bindTexture(gl.TEXTURE_2D, textures[0]);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, frame);
        return finish(probe);
      } finally {
        frame.close();
      }
    },
  };
}
