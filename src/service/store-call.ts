/** The one place where a failing store call becomes data the device can be told about. */
import { OAuthError, UnavailableError } from '../core/errors.ts';

/**
 * Runs a store call; any failure of the store itself becomes `UnavailableError('store')` (answered
 * `temporarily_unavailable`). OAuth errors and unavailability raised inside `op` pass through unchanged.
 */
export async function storeCall<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof OAuthError || err instanceof UnavailableError) throw err;
    throw new UnavailableError('store', 'the store failed', { cause: err });
  }
}
