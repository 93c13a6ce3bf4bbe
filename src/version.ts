/** The package version, for `devicegate --version` and `devicegate_build_info`. */
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
