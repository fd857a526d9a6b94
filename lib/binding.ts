// The native addon, through the loader that `napi build` generates (binding.js at the package
// root, reached through the package's "#binding" import so that the path is the same from the
// TypeScript sources and from the compiled dist/). Only this module touches it.
import native = require('#binding')

export { native }
